// @ccmem/scenario: scenario files, their runner, the model target, the matrix and the explorer.
// This file is the package's public face. The real-KVM target is reached through
// loadKvmTarget() only: importing this package loads no FFI (koffi, libc).

// scenario files
export { EXIT_NAMES, EXPLORE_ONLY_INVARIANT_NAMES, OP_NAMES, OP_SCHEMAS, PROFILES, PROVIDERS, RUN_INVARIANT_NAMES, SIGNALS, TARGET_NAMES, VM_TYPES } from './schema.js';
export { isOpName, scenarioSchema } from './schema.js';
export type { AppliesTo, ConcurrentBlock, ExitName, Expectation, ExpectFields, Invariant, OpArgs, OpName, Profile, Provider, Scenario, SignalName, Step, TargetName, VmConfig, VmType } from './schema.js';
export { DEFAULT_INPUT_LIMITS, ScenarioParseError, formatPath, formatScenarioError, loadScenarioFile, loadScenarioFileWithin, parseScenario, readScenarioText, readScenarioTextWithin, readScenarioTextsWithin, tryParseScenario, type InputLimits, type ParseResult, type ScenarioError } from './parse.js';
export { NumberSyntaxError, describeFlags, flagNames, formatAddrExpr, formatHex, parseAddrExpr, parseFlags, parseNumber, parseU64, registerFlagNames } from './numbers.js';
export type { AddrExpr, AddrRef, FlagKind } from './numbers.js';

// the op registry
export { OPS, OP_FAMILIES, opSpec, type OpFamily } from './ops/index.js';
export { missingNeed } from './ops/needs.js';
export type { OpFootprint, OpNeeds, OpSpec, VmTypeName } from './ops/op.js';

// targets and running
export { SkipScenario, dispatch, tableSupport, unsupported } from './target.js';
export type { ArgsOf, HandlerTable, Outcome, ResolvedStep, Resolve, RunContext, Support, Target, TargetOpName, Unsupported } from './target.js';
export { collectEvents, compareOutcome, describeExit, describeExpectation, describeOutcome, diffOutcomes, diffResults } from './runner.js';
export { effectiveVm, jsonReplacer, resolveStep, runScenario, sameValue, show } from './runner.js';
export type { RunOptions, ScenarioResult, StepDiff, StepResult } from './runner.js';
export { backendOptions, createModelTarget, INVARIANT_EVERY_STEP_LIMIT, INVARIANT_MODES, modelProfileName, type InvariantMode, type ModelTarget, type ModelTargetOptions } from './model-target.js';
export { kvmUnavailableReason } from './kvm-available.js';
export type { KvmTarget } from './kvm-target.js';
/** The real-KVM target module (loads @ccmem/kvm, and with it libc through koffi). */
export const loadKvmTarget = () => import('./kvm-target.js');

// the matrix, the built-in suite, differential runs
export { appliesToTarget, buildMatrix, cellMatches, matrixCells, providersOf, statusOf, summarizeMatrix, vmTypesOf } from './matrix.js';
export type { MatrixCell, MatrixColumns, MatrixOptions, MatrixRow, MatrixStatus, ScenarioEntry } from './matrix.js';
export { builtinScenarioDir, builtinScenarioFiles, builtinScenarios } from './builtin/index.js';
export { asHostScenario, comparableOutcome, comparedStats, diffScenario, type DiffOptions, type OutcomeDifference, type ScenarioDiff } from './differential.js';

// ccmem explore: deterministic exploration of concurrent KVM operations (docs/explore.md)
export { EXPLORE_INVARIANTS, explore, formatSchedule, parseSchedule, replaySchedule, runOnce, shrinkSchedule } from './explore/engine.js';
export { SHARD_DEPTH } from './explore/engine.js';
export type { ExploreOptions, ExploreProgress, PhaseReport, ExploreReport, ExploreStats, ExploreViolation, Observation, RunResult, ShardSpec, StopReason } from './explore/engine.js';
export { exploreWorkers, type ExplorationSource, type WorkersOptions } from './explore/workers.js';
export { mergeReports, mergeResults, missingShards, reportToJson, resultOf, shortestFirst, type ExploreResultJson } from './explore/merge.js';
export { builtinExplorationDir, builtinExplorationNames, loadBuiltinExploration, loadExplorationFile, loadExplorationFileWithin, parseExploration } from './explore/load.js';
export { DEFAULT_READ_TIMEOUT_MS, readFilesBounded, type BoundedReadOptions, type BoundedReadResult } from './read-file.js';
export type { ExplorationFile, ExploreHeader, LoadResult } from './explore/load.js';
export type { ExploreMode } from './explore/types.js';
export { Actor, SetupError, World, type ActorStepRecord, type WorldOptions } from './explore/world.js';

// ccmem fuzz: random campaigns, model vs real KVM or the model against its invariants
export { hostFuzzFeatures, fuzzCaseArb, fuzzOpArb, fuzzScenario, runFuzzCampaign, scenarioToYaml } from './fuzz/index.js';
export type { FuzzFeatures, FuzzFinding, FuzzMode, FuzzOp, FuzzOptions, FuzzProgress, FuzzSummary } from './fuzz/index.js';

// ccmem report: the data of a report page (the model's state after every step or phase)
export { LAYERS, snapshotVm, type LayerName, type Run, type SnapshotSlot, type StateSnapshot } from './report/snapshot.js';
export { REPORT_FORMAT, type ReportData, type ReportEvent, type ReportExploration, type ReportOutcome, type ReportSchedule, type ReportStep, type SchedulePoint } from './report/data.js';
export { SnapshotTarget, StateTable, buildDiffReport, buildExploreReport, buildRunReport, reportEvents, type DiffReportOptions, type ExploreReportOptions, type RunReportOptions } from './report/capture.js';
export { checkScenarioText, runInputFuzzCampaign, scenarioTextArb } from './fuzz/index.js';
export type { InputFuzzFinding, InputFuzzOptions, InputFuzzProgress, InputFuzzSummary, InputVerdict } from './fuzz/index.js';
