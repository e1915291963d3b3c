// Small shared helpers. Everything the host page can reach (listeners, observer callbacks,
// timers) goes through `safe`, so nothing fieldlab does can throw into the page.

export const perf = performance;
export const doc = document;

export const safe = (f) => (a) => {
  try {
    f(a);
  } catch (e) {}
};

// Capturing listener on window: runs even when the page stops propagation.
export const on = (type, f, capture = true) => addEventListener(type, safe(f), capture);

export const hidden = () => doc.visibilityState == 'hidden';

// Buffered observer for one entry type; undefined when the type (or PerformanceObserver) is
// unsupported — no console warning for unknown types, unlike a bare observe().
export const observe = (type, f, durationThreshold) => {
  try {
    if (PerformanceObserver.supportedEntryTypes.includes(type)) {
      const po = new PerformanceObserver(safe((l) => f(l.getEntries())));
      po.observe({type, buffered: true, durationThreshold});
      po._f = f;
      return po;
    }
  } catch (e) {}
};

// Hand pending records to the observer's own handler now (when the page is being hidden).
export const takeRecords = (po) => po && po._f(po.takeRecords());

// The navigation entry, ignoring the broken ones browsers sometimes report (responseStart 0,
// negative, or in the future) — the same guard web-vitals uses.
export const navEntry = () => {
  const n = perf.getEntriesByType('navigation')[0];
  return n && n.responseStart > 0 && n.responseStart < perf.now() ? n : 0;
};

// A short, stable CSS-ish selector: id wins, else tag plus sorted classes, walking up until
// about 100 characters. Same output as web-vitals' getSelector so both can be compared.
export const sel = (n) => {
  let s = '';
  try {
    for (; n.nodeType != 9; n = n.parentNode) {
      const p = n.id
        ? '#' + n.id
        : // Elements by lower-case tag name, other nodes by name without '#' ("TEXT").
          [
            n.nodeName[n.nodeType == 1 ? 'toLowerCase' : 'toUpperCase']().replace(/^#/, ''),
            ...[...(n.classList || [])].sort(),
          ].join('.');
      if (s.length + p.length > 99) return s || p;
      s = s ? p + '>' + s : p;
      if (n.id) break;
    }
  } catch (e) {}
  return s;
};

export const max = Math.max;
export const min = Math.min;
