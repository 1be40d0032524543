/** One benchmark row: `run()` returns the measured value in `unit`. */
export interface BenchCase {
  /** e.g. "memslot.create_delete_32764" */
  readonly name: string;
  readonly unit: string;
  /** the target from the issue: the value must be >= or <= this */
  readonly target: { readonly op: '>=' | '<='; readonly value: number };
  run(): number | Promise<number>;
}
