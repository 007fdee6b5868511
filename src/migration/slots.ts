/**
 * Bounds how many migrations this node drives at once; the rest wait their
 * turn in order. (Each holds a CRIU dump, its images and the link; and two
 * CRIU dumps at once on one host can collide.)
 */
export class MigrationSlots {
  private running = 0;
  private readonly waiting: (() => void)[] = [];

  constructor(private readonly limit: number) {}

  /** Resolves when a slot is free: the function that frees it (idempotent), and whether it had to wait. */
  async take(): Promise<{ free: () => void; waited: boolean }> {
    const waited = this.running >= this.limit;
    if (waited) await new Promise<void>((resolve) => this.waiting.push(resolve));
    else this.running++;
    let freed = false;
    const free = () => {
      if (freed) return;
      freed = true;
      const next = this.waiting.shift();
      if (next) next();
      else this.running--;
    };
    return { free, waited };
  }

  queued(): number {
    return this.waiting.length;
  }
}
