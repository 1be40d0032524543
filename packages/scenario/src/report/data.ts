/**
 * What a `ccmem report` HTML file shows, as plain JSON (the page embeds it and draws it):
 * the steps of a run (or of a model/kvm comparison), the model's state after each of them,
 * and for an exploration the points of one or more schedules.
 */
import type { StateSnapshot } from './snapshot.js';

export const REPORT_FORMAT = 1;

export interface ReportEvent {
  name: string;
  /** field values as text (bigints and big numbers in hex) */
  fields: Record<string, string>;
}

/** what one target did at a step (the diff view has two) */
export interface ReportOutcome {
  target: string;
  pass: boolean;
  outcome: string;
  expected: string;
  mismatches: string[];
  rule?: string;
  skipped?: string;
  events: ReportEvent[];
  /** MMU statistics after the step (KVM_GET_STATS_FD names) */
  stats?: Record<string, number>;
}

export interface ReportStep {
  index: number;
  op: string;
  actor?: string;
  line?: number;
  /** the step's arguments as the file wrote them */
  args: string;
  /** the model (run view) or the first target */
  result: ReportOutcome;
  /** diff view: the real kernel */
  kvm?: ReportOutcome;
  /** diff view: the fields where model and kvm disagree at this step */
  differences?: string[];
  /** index into ReportData.states: the model's state after the step (null: none taken) */
  state: number | null;
}

/** One scheduled phase of an exploration run. */
export interface SchedulePoint {
  actor: string;
  /** scenario-wide index and op of the actor's step, and the phase that ran */
  step: number;
  op: string;
  phase: string;
  events: ReportEvent[];
  /** invariant messages found right after this phase (observations included) */
  messages: string[];
  /** the observation names those messages count as */
  observed: string[];
  /** this phase is where the run's violation was found */
  violation: boolean;
  state: number | null;
  /** the step finished with this outcome at this phase */
  outcome?: string;
}

export interface ReportSchedule {
  /** "counterexample (shrunk)", "counterexample as found", "chosen schedule" ... */
  title: string;
  /** actor names joined by "." (the --replay form) */
  schedule: string;
  violation: string | null;
  /** why this schedule is shown (e.g. the observation it reaches) */
  note?: string;
  points: SchedulePoint[];
  /** the state after the run ended (the deterministic completion included) */
  endState: number | null;
}

export interface ReportExploration {
  actors: string[];
  /** one line: mode, schedules, verdict */
  summary: string;
  observations: Record<string, number>;
  invariants: string[];
  schedules: ReportSchedule[];
}

export interface ReportData {
  format: typeof REPORT_FORMAT;
  kind: 'run' | 'diff' | 'explore';
  title: string;
  description?: string;
  file: string;
  vm: { type: string; provider: string; profile?: string };
  /** the run's verdict in a few words */
  verdict: string;
  pass: boolean;
  steps: ReportStep[];
  /** distinct state snapshots (steps and points refer to them by index) */
  states: StateSnapshot[];
  explore?: ReportExploration;
  /** remarks about the report itself (what could not be captured) */
  notes: string[];
}
