/**
 * One reconciliation round at a time: a call during a round asks for one
 * more after it (however many calls came), and resolves when that one is
 * done, so a caller always sees a round that started after it asked.
 */
export class Rounds {
  private round: Promise<void> | undefined;
  private again = false;

  constructor(private readonly work: () => Promise<void>) {}

  run(): Promise<void> {
    if (this.round) {
      this.again = true;
      return this.round;
    }
    this.round = (async () => {
      try {
        do {
          this.again = false;
          await this.work();
        } while (this.again);
      } finally {
        this.round = undefined;
      }
    })();
    return this.round;
  }
}
