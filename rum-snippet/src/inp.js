// INP with web-vitals v6 semantics: Event Timing entries (durationThreshold 40, plus the
// first-input entry, which is reported whatever its duration) grouped by interactionId; the
// 10 longest interactions are kept and INP is the (interactionCount/50)th longest of them.
// Attribution: entries painted in the same frame (render times within 8 ms) are grouped to get
// input delay / processing / presentation, and Long Animation Frames overlapping the
// interaction name the scripts that ran.
import {max, min, observe, perf, sel, takeRecords} from './util.js';

let top = []; // longest interactions first: {_id, _l: latency, _e: entries, _t: target}
let frames = []; // recent frame groups: {_r: render time, _ps, _pe}
let loafs = [];
let count0 = 0; // interaction count when the current page view started
let po;

// Native in Chrome 144+ and Firefox. Older Chrome has none (web-vitals estimates it from
// interaction ids there); fieldlab then takes the longest interaction, see README.
const count = () => perf.interactionCount || 0;

const overlaps = (f, start, end) => f.startTime + f.duration >= start && f.startTime <= end;

const processEntry = (e) => {
  const end = e.startTime + e.duration;
  let g;
  // Newest first, as the matching frame is most likely the latest one.
  for (let i = frames.length; i-- && !g; ) if (Math.abs(end - frames[i]._r) <= 8) g = frames[i];
  if (g) {
    g._ps = min(g._ps, e.processingStart);
    g._pe = max(g._pe, e.processingEnd);
  } else {
    frames.push((g = {_r: end, _ps: e.processingStart, _pe: e.processingEnd}));
    frames.splice(0, frames.length - 10);
  }
  e._g = g;
  const id = e.interactionId;
  if (!id) return;
  let x = top.find((x) => x._id == id);
  if (!x) top.push((x = {_id: id, _e: [e], _l: e.duration}));
  else if (e.duration > x._l) (x._e = [e]), (x._l = e.duration);
  else if (e.duration == x._l && e.startTime == x._e[0].startTime) x._e.push(e);
  // Keep the 10 longest (a new interaction that is not among them drops out again here).
  top.sort((a, b) => b._l - a._l).splice(10);
  if (!x._t) {
    const t = x._e.find((e) => e.target);
    x._t = t ? sel(t.target) : (x._e.find((e) => e.targetSelector) || {}).targetSelector;
  }
};

export const startINP = () => {
  po = observe('event', (es) => es.forEach(processEntry), 40);
  po && po.observe({type: 'first-input', buffered: true});
  // Keep the 10 latest frames plus those overlapping a candidate interaction.
  observe('long-animation-frame', (es) => {
    loafs = loafs
      .concat(es)
      .filter((f, i, a) => i >= a.length - 10 || top.some((x) => overlaps(f, x._e[0].startTime, x._e[0]._g._pe)));
  });
};

// A new page view (bfcache restore, soft navigation) measures only interactions from now on.
export const resetINP = () => {
  count0 = count();
  top = [];
};

// Sets INP and its attribution on the page view `v`; `later`: a bfcache restore or soft navigation.
export const reportINP = (v, later) => {
  takeRecords(po);
  const n = count() - count0;
  const i = min(top.length - 1, (n / 50) | 0);
  const x = top[i];
  if (x) {
    const f = x._e[0];
    const g = f._g;
    const t = f.startTime;
    const ps = max(g._ps, t);
    const paint = max(t + f.duration, ps);
    const pe = min(g._pe, paint);
    const scripts = [];
    for (const l of loafs)
      if (overlaps(l, t, pe))
        for (const s of l.scripts)
          if (s.startTime + s.duration >= t)
            scripts.push({src: s.sourceURL, invoker: s.invoker, dur: s.duration});
    v.metrics.INP = x._l;
    v.attribution.INP = {
      target: x._t,
      type: f.name[0] == 'k' ? 'keyboard' : 'pointer', // keydown, keyup, keypress
      time: t,
      inputDelay: ps - t,
      processing: pe - ps,
      presentation: paint - pe,
      loaf: scripts.length ? scripts.sort((a, b) => b.dur - a.dur).slice(0, 3) : void 0,
    };
  } else if (n && i < 0 && later) {
    // Interactions happened but none reached the threshold, and there is no first-input entry
    // after a restore or soft navigation: web-vitals reports a nominal 8 ms.
    v.metrics.INP = 8;
  }
};
