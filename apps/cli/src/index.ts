export { main, buildProgram } from './program.js';
export { processIo, bufferIo, type CliIo } from './io.js';
export { getTarget, getTargetFactory, hasTarget, registerTarget, loadTargets, type TargetFactory } from './targets.js';
export { buildRunCommand, runCommand, type RunCommandOptions } from './commands/run.js';
export { buildMatrixCommand, matrixCommand, type MatrixCommandOptions } from './commands/matrix.js';
export { buildExplainCommand, explainCommand } from './commands/explain.js';
export { buildDiffCommand, diffCommand, type DiffOptions } from './commands/diff.js';
export { buildExploreCommand, exploreCommand, type ExploreCommandOptions } from './commands/explore.js';
export { EXIT_OK, EXIT_FAIL, EXIT_INVALID } from './commands/shared.js';
