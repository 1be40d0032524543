export { hostFuzzFeatures, fuzzCaseArb, fuzzOpArb, fuzzScenario, scenarioToYaml, GMEM_PAGES, GPA_BASES, PAGE, RAM_PAGES, type FuzzFeatures, type FuzzOp } from './generate.js';
export { runFuzzCampaign, type FuzzFinding, type FuzzMode, type FuzzOptions, type FuzzProgress, type FuzzSummary } from './campaign.js';
export { checkScenarioText, HOSTILE_VALUES, mutate, runInputFuzzCampaign, scenarioTextArb, type InputFuzzFinding, type InputFuzzOptions, type InputFuzzProgress, type InputFuzzSummary, type InputVerdict } from './input.js';
