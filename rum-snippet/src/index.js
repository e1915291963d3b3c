// fieldlab.js — field Core Web Vitals with web-vitals v6 definitions, one beacon per page view.
// See ../README.md for the tag, options, the beacon format and differences from web-vitals.
import {reportINP, resetINP, startINP} from './inp.js';
import {doc, hidden, max, min, navEntry, observe, on, perf, safe, sel, takeRecords} from './util.js';

let data; // the script tag's data-* options
let endpoint;
let view; // the current page view, shaped exactly like the beacon JSON
let hard; // the document's own navigation: FCP, LCP and TTFB belong to it
let start; // when the current page view started (performance.now() time base)
let sent; // the body last sent for the current page view
let sampled;
let act; // activationStart: all hard-navigation times are relative to it (prerender)
let hiddenAt; // first time the page was hidden; paints after it are not reported
let fcpSeen; // CLS is reported only after FCP, as web-vitals (and CrUX) do
let fcpPo;
let lcpPo;
let lcpDone;
let clsPo;
let cls; // CLS: largest session window so far, its entries, and the current window
let clsEntries;
let sess;
let sessEntries;
let sessFirst;
let sessLast;

const newView = (nav, t, url) => {
  start = t;
  sent = '';
  sampled = Math.random() < +(data.sample || 1);
  cls = sess = 0;
  clsEntries = sessEntries = [];
  view = {
    v: 1,
    id: Date.now() + '' + Math.random(),
    url: url || location.href,
    nav,
    ts: Math.round(perf.timeOrigin + t),
    metrics: {},
    attribution: {},
    context: {
      vw: innerWidth,
      vh: innerHeight,
      dm: navigator.deviceMemory,
      ect: (navigator.connection || {}).effectiveType,
      dpr: devicePixelRatio,
    },
    group: data.pageGroup,
  };
};

const post = (body) => {
  try {
    if (navigator.sendBeacon(endpoint, body)) return;
  } catch (e) {}
  // No sendBeacon, or its queue is full.
  fetch(endpoint, {method: 'POST', body, keepalive: true, headers: {'content-type': 'text/plain'}}).catch(() => {});
};

// Bring the current page view up to date and send it if it changed since the last send.
const flush = () => {
  takeRecords(clsPo);
  reportINP(view, view != hard);
  if (fcpSeen) {
    view.metrics.CLS = cls;
    if (clsEntries.length) {
      const e = clsEntries.reduce((a, b) => (a.value > b.value ? a : b));
      view.attribution.CLS = {target: e._t, time: e.startTime, value: e.value};
    }
  }
  const body = JSON.stringify(view, (k, v) =>
    typeof v == 'number' ? +v.toFixed(4) : typeof v == 'string' ? v.slice(0, 1e3) : v,
  );
  if (sampled && body != sent) post((sent = body));
};

// Hard-navigation times count from activation (prerendered pages), never below 0.
const rel = (t) => max(t - act, 0);

const onShift = (es) => {
  for (const e of es)
    if (!e.hadRecentInput) {
      const t = e.startTime;
      // Session windows: shifts less than 1 s apart, at most 5 s long; the largest one wins.
      if (sess && t - sessLast < 1e3 && t - sessFirst < 5e3) (sess += e.value), sessEntries.push(e);
      else (sess = e.value), (sessEntries = [e]), (sessFirst = t);
      sessLast = t;
      // The largest shift's target: its first element source, else its first source.
      const s = e.sources || [];
      const n = (s.find((s) => s.node && s.node.nodeType == 1) || s[0] || {}).node;
      if (n) e._t = sel(n);
      if (sess > cls) (cls = sess), (clsEntries = sessEntries);
    }
};

const onLCP = (es) => {
  for (const e of es)
    if (!lcpDone && e.startTime < hiddenAt) {
      const v = rel(e.startTime);
      const u = e.url;
      const n = navEntry();
      // The latest request for the URL that started before the paint.
      const r = u && perf.getEntriesByName(u, 'resource').filter((r) => (r.requestStart || r.startTime) <= e.startTime).pop();
      // LCP subparts: TTFB, resource load delay, load duration, element render delay. Without
      // a navigation entry they are 0, 0, 0 and the whole value.
      let ttfb = 0;
      let rs = 0;
      let re = 0;
      if (n) {
        ttfb = rel(n.responseStart);
        rs = max(ttfb, rel(r ? r.requestStart || r.startTime : 0));
        re = min(v, max(rs, rel(r ? r.responseEnd : 0)));
      }
      hard.attribution.LCP = {
        element: e.element ? sel(e.element) : e.id ? '#' + e.id : void 0,
        url: u || void 0,
        ttfb,
        loadDelay: rs - ttfb,
        loadDuration: re - rs,
        renderDelay: v - re,
      };
      hard.metrics.LCP = v;
    }
};

const err = (msg, stack, src, line, col) => {
  const x = view.errors || (view.errors = []);
  if (x.length < 10) x.push({msg: String(msg), src, line, col, stack: stack && String(stack), ts: perf.now() - start});
};

const init = () => {
  const n = navEntry();
  act = n.activationStart || 0;
  // First hidden time from the visibility-state timeline where there is one (the script may load
  // late), else: hidden now means hidden from the start.
  hiddenAt = (
    perf.getEntriesByType('visibility-state').find((e) => e.name == 'hidden' && e.startTime >= act) || {
      startTime: hidden() ? 0 : 1 / 0,
    }
  ).startTime;
  newView(n ? (act > 0 ? 'prerender' : doc.wasDiscarded ? 'restore' : n.type.replace(/_/g, '-')) : 'navigate', act);
  hard = view;

  fcpPo = observe('paint', (es) => {
    for (const e of es)
      if (e.name == 'first-contentful-paint') {
        fcpPo.disconnect();
        if (e.startTime < hiddenAt) (hard.metrics.FCP = rel(e.startTime)), (fcpSeen = 1);
      }
  });
  // The browser itself stops LCP at the first tap, click, key press or scroll; fieldlab also
  // ends it when the page is hidden or a soft navigation starts.
  lcpPo = observe('largest-contentful-paint', onLCP);
  clsPo = observe('layout-shift', onShift);
  startINP();

  // TTFB once the page has loaded, like web-vitals (the navigation entry is complete then), or
  // when the page is left before that: web-vitals reports nothing for a visitor who gives up on
  // a slow load, and leaving them out would make slow pages look faster than they are.
  const ttfb = safe(() => {
    const n = navEntry();
    if (n && n.responseStart > 0 && hard.metrics.TTFB == null) hard.metrics.TTFB = rel(n.responseStart);
  });
  doc.readyState == 'complete' ? setTimeout(ttfb) : on('load', () => setTimeout(ttfb), false);

  const leave = (e) => {
    if (hiddenAt == 1 / 0) hiddenAt = e.timeStamp;
    lcpDone = 1;
    ttfb();
    flush();
  };
  on('visibilitychange', (e) => hidden() && leave(e));
  on('pagehide', leave);

  // A back/forward cache restore is a new page view; paint metrics are the time to the next
  // frame after the restore (double rAF), TTFB is 0, CLS and INP start again.
  on('pageshow', (e) => {
    if (e.persisted) {
      const t = e.timeStamp;
      newView('back-forward-cache', t);
      resetINP();
      const v = view;
      if (navEntry()) v.metrics.TTFB = 0;
      setTimeout(safe(() => (hiddenAt = hidden() ? 0 : 1 / 0)));
      requestAnimationFrame(() =>
        requestAnimationFrame(
          safe(() => {
            const d = perf.now() - t;
            if (fcpPo) (v.metrics.FCP = d), (fcpSeen = 1);
            if (lcpPo) v.metrics.LCP = d;
          }),
        ),
      );
    }
  });

  on('error', (e) => err(e.message, e.error && e.error.stack, e.filename, e.lineno, e.colno), false);
  on('unhandledrejection', (e) => {
    const r = e.reason;
    err((r && r.message) || r, r && r.stack);
  });

  // SPA soft navigation: send the current page view, start a new one at the new URL.
  window.fieldlab = {
    page: safe((path) => {
      path = new URL(path || '', location.href).href;
      // The same URL again (e.g. a router reporting the landing page) is not a new page view.
      if (path != view.url) {
        flush();
        lcpDone = 1;
        newView('soft', perf.now(), path);
        resetINP();
      }
    }),
  };
};

safe(() => {
  const s = doc.currentScript;
  data = s.dataset;
  if (data.site) {
    // The beacon goes to the origin the script came from unless data-endpoint says otherwise.
    endpoint =
      (data.endpoint || new URL('/api/v1/beacon', s.src)) + '?site=' + encodeURIComponent(data.site);
    doc.prerendering ? on('prerenderingchange', init) : init();
  }
})();
