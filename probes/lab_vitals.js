// fieldlab lab collector: injected into every top-level document of a flow run (add_init_script).
// It keeps raw observations; probes/vitals.py turns them into per-step metrics, so a step can
// count only the layout shifts and interactions that happened while it ran.
//
// Same sources as the field snippet (rum-snippet/), with one lab difference: Event Timing is
// observed with durationThreshold 16 (the smallest the spec allows) instead of web-vitals' 40,
// because a scripted flow has few interactions and each one matters; entries shorter than 16 ms
// are not reported by the browser at all.
(() => {
  if (window.top !== window || window.__fieldlabLab) return;
  if (!/^https?:$/.test(location.protocol)) return;
  const perf = performance;
  const doc = Date.now().toString(36) + Math.random().toString(36).slice(2);
  let fcp = null;
  let lcp = null;
  const shifts = []; // [startTime, value] of shifts without recent input
  const byId = new Map(); // interactionId -> [startTime, longest duration]
  let firstInput = null;
  let owed = []; // input events still owed an Event Timing entry; see settle()
  const GRACE_MS = 100; // how long after its handlers an owed event's entry is waited for
  const unowe = (now) => (owed = owed.filter((x) => now - x[2] < GRACE_MS));
  const observe = (type, cb, opts) => {
    try {
      const po = new PerformanceObserver((l) => cb(l.getEntries()));
      po.observe(Object.assign({type, buffered: true}, opts));
      // Entries still queued are handed to the same callback when a snapshot is taken.
      return () => cb(po.takeRecords());
    } catch (e) {
      return null;
    }
  };
  const act = () => {
    const n = perf.getEntriesByType('navigation')[0];
    return (n && n.activationStart) || 0;
  };
  const pos = (t) => Math.max(t - act(), 0);
  const observers = [
    observe('paint', (es) => es.forEach((e) => e.name === 'first-contentful-paint' && (fcp = pos(e.startTime)))),
    observe('largest-contentful-paint', (es) => es.forEach((e) => (lcp = pos(e.startTime)))),
    observe('layout-shift', (es) => es.forEach((e) => e.hadRecentInput || shifts.push([e.startTime, e.value]))),
    observe(
      'event',
      (es) =>
        es.forEach((e) => {
          owed = owed.filter((x) => x[0] !== e.name || x[1] !== e.startTime);
          if (!e.interactionId) return;
          const x = byId.get(e.interactionId);
          if (!x) byId.set(e.interactionId, [e.startTime, e.duration]);
          else if (e.duration > x[1]) x[1] = e.duration;
        }),
      {durationThreshold: 16},
    ),
    observe('first-input', (es) => es.forEach((e) => (firstInput = [e.startTime, e.duration, e.interactionId || 0]))),
  ];
  // Event Timing reports an event only once the frame after it has been presented, which can
  // be tens of ms after its handlers finished: a step that ends right after a slow click would
  // read the interaction's pointerdown but not its click. So trusted input events are noted
  // (Event Timing's startTime is the event's timeStamp) and settle() waits, briefly, for their
  // entries. Events shorter than 16 ms never get one, hence the grace period after their
  // handlers finished; a hidden page presents no frames, hence the overall cap. Each owed
  // event is [type, timeStamp, when its handlers had finished (Infinity: not yet)].
  ['pointerdown', 'pointerup', 'click', 'keydown', 'keyup'].forEach((type) =>
    addEventListener(
      type,
      (e) => {
        if (!e.isTrusted) return;
        if (owed.length > 50) unowe(perf.now()); // no settle() lately
        const x = [type, e.timeStamp, Infinity];
        owed.push(x);
        setTimeout(() => (x[2] = perf.now()), 0); // runs once every handler of e has
      },
      {capture: true, passive: true},
    ),
  );
  // Paint timing arrives the same way, after presentation: with ``paint`` settle() also waits
  // (500 ms at most: a page may have nothing contentful to paint) for a visible page's FCP.
  const flushAll = () => observers.forEach((flush) => flush && flush());
  const settle = async (paint) => {
    const start = perf.now();
    for (;;) {
      flushAll();
      const now = perf.now();
      unowe(now);
      const unpainted = paint && fcp === null && document.visibilityState === 'visible' && now - start < 500;
      if ((!owed.length && !unpainted) || now - start > 1000) return;
      await new Promise((r) => setTimeout(r, 5));
    }
  };
  const snapshot = () => {
    flushAll();
    const n = perf.getEntriesByType('navigation')[0];
    const interactions = [];
    byId.forEach((v, id) => interactions.push([v[0], v[1], id]));
    // The first input is reported whatever its duration (as web-vitals does).
    if (firstInput && !byId.has(firstInput[2])) interactions.push(firstInput);
    return {
      doc,
      url: location.href,
      now: perf.now(),
      ttfb: n && n.responseStart > 0 ? pos(n.responseStart) : null,
      fcp,
      lcp,
      shifts: shifts.slice(),
      interactions,
      count: perf.interactionCount || byId.size,
    };
  };
  window.__fieldlabLab = {snapshot, settle};
  // The last word of a document that is going away; the runner also snapshots the current
  // document at the end of every step.
  addEventListener('pagehide', () => {
    try {
      window.__fieldlabReport && window.__fieldlabReport(JSON.stringify(snapshot()));
    } catch (e) {}
  });
})();
