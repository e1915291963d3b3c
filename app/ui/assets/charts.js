// Draws the charts of a page from the JSON the server embedded in it; the same numbers are in
// the page's tables, so nothing is lost without JavaScript.
import uPlot from 'uplot';

const COLORS = {good: '#0a7a3e', needs_improvement: '#9a4f00', poor: '#b42318', line: '#0b57d0'};
const LAB = ['#c2410c', '#7c3aed', '#0f766e', '#a16207']; // one per check, then again
const RUNS = ['#0b57d0', '#c2410c', '#0f766e', '#7c3aed', '#a16207', '#be185d', '#4d7c0f', '#475569', '#0891b2'];

function fmt(metric, v) {
  if (v == null) return '–';
  if (metric === 'CLS') return v.toFixed(3);
  return v >= 1000 ? (v / 1000).toFixed(2) + ' s' : Math.round(v) + ' ms';
}

// Dashed horizontal lines at the good and poor thresholds, drawn under the series.
function thresholdLines(thresholds) {
  return (u) => {
    const ctx = u.ctx;
    ctx.save();
    ctx.setLineDash([4, 4]);
    ctx.lineWidth = 1;
    [[thresholds[0], COLORS.good], [thresholds[1], COLORS.poor]].forEach(([value, color]) => {
      const y = u.valToPos(value, 'y', true);
      if (y < u.bbox.top || y > u.bbox.top + u.bbox.height) return;
      ctx.strokeStyle = color;
      ctx.beginPath();
      ctx.moveTo(u.bbox.left, y);
      ctx.lineTo(u.bbox.left + u.bbox.width, y);
      ctx.stroke();
    });
    ctx.restore();
  };
}

// A grey vertical line with the commit at each deploy marker inside the chart's range.
function deployLines(markers) {
  return (u) => {
    const ctx = u.ctx;
    ctx.save();
    ctx.strokeStyle = '#57606a';
    ctx.fillStyle = '#57606a';
    ctx.lineWidth = 1;
    ctx.font = `${10 * devicePixelRatio}px system-ui, sans-serif`;
    for (const m of markers) {
      const x = u.valToPos(m.t, 'x', true);
      if (x < u.bbox.left || x > u.bbox.left + u.bbox.width) continue;
      ctx.beginPath();
      ctx.moveTo(x, u.bbox.top);
      ctx.lineTo(x, u.bbox.top + u.bbox.height);
      ctx.stroke();
      ctx.fillText(m.label, x + 3, u.bbox.top + 10 * devicePixelRatio);
    }
    ctx.restore();
  };
}

// Solid purple lines at the chart's budget levels (warn thinner than fail).
function budgetLines(budget) {
  return (u) => {
    const ctx = u.ctx;
    ctx.save();
    ctx.strokeStyle = '#8250df';
    for (const [level, lineWidth] of [['warn', 1], ['fail', 2]]) {
      if (budget[level] == null) continue;
      const y = u.valToPos(budget[level], 'y', true);
      if (y < u.bbox.top || y > u.bbox.top + u.bbox.height) continue;
      ctx.lineWidth = lineWidth * devicePixelRatio;
      ctx.beginPath();
      ctx.moveTo(u.bbox.left, y);
      ctx.lineTo(u.bbox.left + u.bbox.width, y);
      ctx.stroke();
    }
    ctx.restore();
  };
}

function width(el) {
  return Math.max(240, el.clientWidth || 480);
}

// Field p75 as a line; each check's lab runs (c.lab) as points of their own on the same time
// axis. The tables are joined on time: the field line keeps its gaps (empty buckets), the lab
// points are drawn where a run was.
function trend(el, c, markers) {
  const lab = c.lab || [];
  const values = [...c.y, ...lab.flatMap((l) => l.y)].filter((v) => v != null);
  const top = Math.max(c.thresholds[1] * 1.1, c.budget && c.budget.fail ? c.budget.fail * 1.1 : 0, ...values);
  const data = lab.length
    ? uPlot.join([[c.x, c.y], ...lab.map((l) => [l.x, l.y])], [[2], ...lab.map(() => [0])])
    : [c.x, c.y];
  return new uPlot(
    {
      width: width(el),
      height: 200,
      scales: {x: {time: true}, y: {range: [0, top]}},
      axes: [{}, {values: (u, ticks) => ticks.map((t) => fmt(c.metric, t)), size: 60}],
      series: [
        {},
        {label: `p75 ${c.metric}`, stroke: COLORS.line, width: 2, spanGaps: false,
         value: (u, v) => fmt(c.metric, v), points: {show: c.x.length < 60}},
        ...lab.map((l, i) => ({
          label: `${l.name} (lab)`, stroke: LAB[i % LAB.length], paths: () => null, value: (u, v) => fmt(c.metric, v),
          points: {show: true, size: 5, stroke: LAB[i % LAB.length], fill: LAB[i % LAB.length]},
        })),
      ],
      hooks: {drawAxes: [thresholdLines(c.thresholds), budgetLines(c.budget || {}), deployLines(markers)]},
      legend: {show: true},
    },
    data,
    el,
  );
}

// A check's own chart: one line per series (the whole run, each step, each vital or score) over
// its runs; a run without a value leaves a gap.
function runsChart(el, x, range, c, markers) {
  const unit = c.unit === 'CLS' ? 'CLS' : c.unit === 'score' ? 'score' : 'ms';
  const show = (v) => (v == null ? '–' : unit === 'score' ? String(v) : fmt(unit, v));
  return new uPlot(
    {
      width: width(el),
      height: 200,
      scales: {x: {time: true, range: () => range}, y: {range: (u, lo, hi) => [0, unit === 'score' ? 100 : Math.max((hi || 0) * 1.1, unit === 'CLS' ? 0.1 : 100)]}},
      axes: [{}, {values: (u, ticks) => ticks.map(show), size: 60}],
      series: [
        {},
        ...c.series.map((s, i) => ({
          label: s.name, stroke: RUNS[i % RUNS.length], width: 1.5, value: (u, v) => show(v), points: {show: x.length < 60},
        })),
      ],
      legend: {show: true},
      hooks: {drawAxes: [deployLines(markers)]},
    },
    [x, ...c.series.map((s) => s.y)],
    el,
  );
}

function histogram(el, h) {
  const x = h.bins.map((_, i) => i);
  const band = (name) => h.bins.map((b) => (b.rating === name ? b.count : null));
  const bars = uPlot.paths.bars({size: [0.9, 40]});
  const series = ['good', 'needs_improvement', 'poor'].map((name) => ({
    label: name.replace('_', ' '), fill: COLORS[name], stroke: COLORS[name], paths: bars, points: {show: false},
  }));
  return new uPlot(
    {
      width: width(el),
      height: 200,
      scales: {x: {time: false, range: [-0.5, x.length - 0.5]}},
      axes: [
        {values: (u, ticks) => ticks.map((t) => (h.bins[t] ? fmt(h.metric, h.bins[t].from) : ''))},
        {size: 50},
      ],
      series: [{}, ...series],
    },
    [x, band('good'), band('needs_improvement'), band('poor')],
    el,
  );
}

// Each chart is drawn in a task of its own: all of them in one took ~60 ms of main thread on a
// slow core (TBT ~230 ms in Lighthouse's mobile run), none of them alone is a long task.
function nextTask() {
  const s = globalThis.scheduler;
  return s && s.yield ? s.yield() : new Promise((resolve) => setTimeout(resolve, 0));
}

// Resolves once el comes within 300 px of the viewport. On a phone most charts start below the
// fold, and drawing them during load was most of the trends page's blocking time (Lighthouse,
// 30 days, a slow CPU: two of its three longest tasks), so they wait until they are scrolled to.
function nearView(el) {
  if (!('IntersectionObserver' in globalThis)) return Promise.resolve();
  return new Promise((resolve) => {
    const io = new IntersectionObserver((entries) => {
      if (entries.some((e) => e.isIntersecting)) {
        io.disconnect();
        resolve();
      }
    }, {rootMargin: '300px 0px'});
    io.observe(el);
  });
}

function main() {
  const data = document.getElementById('chart-data');
  if (!data) return;
  const spec = JSON.parse(data.textContent);
  const draws = [];
  for (const c of spec.trends || []) {
    const el = document.querySelector(`[data-chart="${c.metric}"]`);
    if (el && c.x.length) draws.push([el, () => trend(el, c, spec.markers || [])]);
  }
  const runs = spec.runs;
  (runs ? runs.charts : []).forEach((c, i) => {
    const el = document.querySelector(`[data-chart="run-${i}"]`);
    if (el && runs.x.length) draws.push([el, () => runsChart(el, runs.x, runs.range, c, spec.markers || [])]);
  });
  const histEl = document.querySelector('[data-chart="histogram"]');
  if (histEl && spec.histogram && spec.histogram.bins.length) draws.push([histEl, () => histogram(histEl, spec.histogram)]);
  const charts = [];
  addEventListener('resize', () => {
    for (const [el, u] of charts) u.setSize({width: width(el), height: 200});
  });
  const pending = new Set(draws);
  let queue = Promise.resolve();
  const draw = (entry) => {
    if (!pending.delete(entry)) return;
    charts.push([entry[0], entry[1]()]);
  };
  for (const entry of draws) {
    nearView(entry[0]).then(() => {
      // A chart that fails to draw is reported (window.onerror) and the others still draw.
      queue = queue.then(nextTask).then(() => draw(entry)).catch((e) => setTimeout(() => { throw e; }));
    });
  }
  // A printed page has every chart.
  addEventListener('beforeprint', () => pending.forEach(draw));
}

main();
