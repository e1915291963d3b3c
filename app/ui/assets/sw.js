// fieldlab dashboard service worker: the app shell (CSS, chart code) cache-first, dashboard
// pages network-first with the last copy of each kept, so a page viewed before opens offline.
// Signing out empties the page cache. The server fills in VERSION and SHELL when serving this.
const VERSION = '__VERSION__';
const SHELL = __SHELL__;
const ASSETS = 'fieldlab-assets-' + VERSION;
const PAGES = 'fieldlab-pages';
const MAX_PAGES = 30;
const PAGE = /^\/ui(\/|$)/;
const NOT_KEPT = /^\/ui\/(login|logout|sw\.js)|\/artifacts\//;

self.addEventListener('install', (event) => {
  // The API, the beacon above all, goes straight to the network without waking this worker:
  // a beacon sent as a controlled page unloads was otherwise lost in Chromium now and then
  // (the page's own measurements in the built-in "fieldlab" site).
  if (event.addRoutes && self.URLPattern) {
    event.addRoutes({condition: {urlPattern: new URLPattern({pathname: '/api/*'})}, source: 'network'});
  }
  event.waitUntil(caches.open(ASSETS).then((c) => c.addAll(SHELL)).then(() => self.skipWaiting()));
});

self.addEventListener('activate', (event) => {
  event.waitUntil(
    caches.keys()
      .then((keys) => Promise.all(keys.filter((k) => k.startsWith('fieldlab-assets-') && k !== ASSETS).map((k) => caches.delete(k))))
      .then(() => self.clients.claim()),
  );
});

async function keep(request, response) {
  const cache = await caches.open(PAGES);
  await cache.put(request, response);
  const keys = await cache.keys();
  for (const old of keys.slice(0, Math.max(0, keys.length - MAX_PAGES))) await cache.delete(old);
}

async function page(event) {
  try {
    const response = await fetch(event.request);
    // A redirect (to sign-in) or an error page is not the page the user asked for.
    if (response.ok && !response.redirected) event.waitUntil(keep(event.request, response.clone()));
    return response;
  } catch (error) {
    const copy = await caches.match(event.request, {cacheName: PAGES});
    if (copy) return copy;
    throw error;
  }
}

self.addEventListener('fetch', (event) => {
  const request = event.request;
  const url = new URL(request.url);
  if (url.origin !== location.origin) return;
  if (request.method === 'POST' && url.pathname === '/ui/logout') {
    event.waitUntil(caches.delete(PAGES));
    return;
  }
  if (request.method !== 'GET') return;
  if (url.pathname.startsWith('/static/ui/')) {
    event.respondWith(caches.match(request).then((hit) => hit || fetch(request)));
  } else if (request.mode === 'navigate' && PAGE.test(url.pathname) && !NOT_KEPT.test(url.pathname)) {
    event.respondWith(page(event));
  }
});
