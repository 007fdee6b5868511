/** A minimal SVG line chart for bench results: no dependency, readable output. */
export interface Series {
  name: string;
  points: { x: number; y: number }[];
}

/** yLog: a logarithmic y axis, one gridline per decade (for series that differ by orders of magnitude). */
export function lineChart(o: { title: string; xLabel: string; yLabel: string; series: Series[]; yLog?: boolean }): string {
  const W = 640, H = 400, L = 70, R = 160, T = 40, B = 50;
  const xs = o.series.flatMap((s) => s.points.map((p) => p.x));
  const ys = o.series.flatMap((s) => s.points.map((p) => p.y));
  const xMin = Math.min(...xs), xMax = Math.max(...xs);
  const yMax = o.yLog ? Math.max(...ys, 1) * 1.5 : Math.max(...ys) * 1.1 || 1;
  const yMin = o.yLog ? 10 ** Math.floor(Math.log10(Math.max(Math.min(...ys), 1e-3))) : 0;
  const px = (x: number) => L + ((x - xMin) / (xMax - xMin || 1)) * (W - L - R);
  const share = (y: number) => (o.yLog ? Math.log10(Math.max(y, yMin) / yMin) / Math.log10(yMax / yMin || 10) : y / yMax);
  const py = (y: number) => H - B - share(y) * (H - T - B);
  const colours = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd'];
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${W / 2}" y="22" text-anchor="middle" font-size="15">${o.title}</text>`,
    `<line x1="${L}" y1="${H - B}" x2="${W - R}" y2="${H - B}" stroke="black"/>`,
    `<line x1="${L}" y1="${T}" x2="${L}" y2="${H - B}" stroke="black"/>`,
    `<text x="${(L + W - R) / 2}" y="${H - 12}" text-anchor="middle">${o.xLabel}</text>`,
    `<text x="16" y="${(T + H - B) / 2}" text-anchor="middle" transform="rotate(-90 16 ${(T + H - B) / 2})">${o.yLabel}</text>`,
  ];
  const ticks = o.yLog
    ? Array.from({ length: Math.floor(Math.log10(yMax / yMin)) + 1 }, (_, i) => yMin * 10 ** i)
    : [0, 1, 2, 3, 4].map((i) => (yMax * i) / 4);
  for (const y of ticks) {
    parts.push(`<line x1="${L - 4}" y1="${py(y)}" x2="${W - R}" y2="${py(y)}" stroke="#ddd"/><text x="${L - 8}" y="${py(y) + 4}" text-anchor="end">${y.toFixed(y < 10 ? 1 : 0)}</text>`);
  }
  for (const x of [...new Set(xs)]) parts.push(`<text x="${px(x)}" y="${H - B + 16}" text-anchor="middle">${x}</text>`);
  o.series.forEach((s, i) => {
    const c = colours[i % colours.length];
    parts.push(`<polyline fill="none" stroke="${c}" stroke-width="2" points="${s.points.map((p) => `${px(p.x)},${py(p.y)}`).join(' ')}"/>`);
    for (const p of s.points) parts.push(`<circle cx="${px(p.x)}" cy="${py(p.y)}" r="3" fill="${c}"/>`);
    parts.push(`<rect x="${W - R + 12}" y="${T + i * 20}" width="12" height="12" fill="${c}"/><text x="${W - R + 30}" y="${T + i * 20 + 10}">${s.name}</text>`);
  });
  parts.push('</svg>');
  return parts.join('\n');
}
