/**
 * Cumulative per-(endpoint, entry node) byte counters in, recent rates out.
 * Pure: samples come with their time. A counter that goes down was reset
 * (its rules rewritten): what it shows now is what came since.
 */
export interface TrafficSample {
  endpoint: string;
  via: string;
  bytes: number;
}

export interface EntryRates {
  /** bytes per second per entry node over the window */
  byVia: Map<string, number>;
  total: number;
  /** the node most traffic enters at, and its share of the total (0 without traffic) */
  top: string | undefined;
  topShare: number;
  /** how much time the rates cover: less than the window asked for while the endpoint is new here */
  spanMs: number;
}

/** The bytes counted between two readings: from the one before (`from`) to this one (`at`). */
interface Delta {
  from: number;
  at: number;
  bytes: number;
}

export class TrafficWindow {
  private readonly last = new Map<string, number>();
  private readonly deltas = new Map<string, Map<string, Delta[]>>();
  /** cumulative bytes per endpoint and entry node since the agent started (for the metrics) */
  private readonly totals = new Map<string, Map<string, number>>();
  private readonly firstAt = new Map<string, number>();
  private lastRecordAt: number | undefined;

  /** Takes one reading of every counter, made at `now`. Endpoints absent from it are forgotten. */
  record(now: number, samples: TrafficSample[]): void {
    const present = new Set<string>();
    for (const s of samples) {
      present.add(s.endpoint);
      const key = `${s.endpoint} ${s.via}`;
      const before = this.last.get(key);
      this.last.set(key, s.bytes);
      if (!this.firstAt.has(s.endpoint)) this.firstAt.set(s.endpoint, now);
      // Every counter starts at zero when its rule is written: one not read before counts in full.
      const delta = before === undefined ? s.bytes : s.bytes >= before ? s.bytes - before : s.bytes;
      const perVia = this.deltas.get(s.endpoint) ?? new Map<string, Delta[]>();
      this.deltas.set(s.endpoint, perVia);
      const list = perVia.get(s.via) ?? [];
      perVia.set(s.via, list);
      list.push({ from: Math.min(this.lastRecordAt ?? now, now), at: now, bytes: delta });
      // Older deltas are never needed again: the longest window any policy can ask for is kept.
      while (list[0]!.at < now - MAX_WINDOW_MS) list.shift();
      const totals = this.totals.get(s.endpoint) ?? new Map<string, number>();
      this.totals.set(s.endpoint, totals);
      totals.set(s.via, (totals.get(s.via) ?? 0) + delta);
    }
    this.lastRecordAt = now;
    for (const name of [...this.deltas.keys()]) {
      if (present.has(name)) continue;
      this.deltas.delete(name);
      this.totals.delete(name);
      this.firstAt.delete(name);
      for (const key of [...this.last.keys()]) if (key.startsWith(`${name} `)) this.last.delete(key);
    }
  }

  /** The counters were rewritten and start again from zero: the next reading is all new. */
  rebase(): void {
    for (const key of this.last.keys()) this.last.set(key, 0);
  }

  /** Rates over the last `windowMs` (or since the endpoint was first seen, if that is shorter). */
  rates(endpoint: string, now: number, windowMs: number): EntryRates {
    const byVia = new Map<string, number>();
    const perVia = this.deltas.get(endpoint);
    const since = Math.max(now - windowMs, this.firstAt.get(endpoint) ?? now);
    const seconds = Math.max((now - since) / 1000, 0.001);
    let total = 0;
    for (const [via, list] of perVia ?? []) {
      // A reading that straddles the window's start counts for the part inside it: readings come late
      // under load, and one covering two seconds of a client's turn must not count as two seconds of the window.
      const bytes = list.reduce((sum, d) => sum + d.bytes * overlap(d, since, now), 0);
      byVia.set(via, bytes / seconds);
      total += bytes / seconds;
    }
    let top: string | undefined;
    let best = 0;
    for (const [via, rate] of byVia) {
      if (rate > best) {
        best = rate;
        top = via;
      }
    }
    return { byVia, total, top, topShare: total > 0 ? best / total : 0, spanMs: now - since };
  }

  totalsOf(endpoint: string): Map<string, number> {
    return new Map(this.totals.get(endpoint) ?? []);
  }

  endpoints(): string[] {
    return [...this.totals.keys()];
  }
}

/** The share of a delta's interval inside (since, now]; a zero-length one (a first reading) is inside if its time is. */
function overlap(d: Delta, since: number, now: number): number {
  if (d.at <= d.from) return d.at > since && d.at <= now ? 1 : 0;
  return Math.max(0, Math.min(d.at, now) - Math.max(d.from, since)) / (d.at - d.from);
}

/** The schema's maximum windowMs (at one reading a second, 300 deltas per endpoint and entry node). */
export const MAX_WINDOW_MS = 300000;
