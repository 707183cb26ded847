// The field app's service worker, by hand: the app shell cached under this version (a hash
// of the app's files, filled in by the server), pages network-first (fresh when online,
// the cached shell when not), versioned assets cache-first. API calls are never cached:
// what must work offline (walk lists, door records) lives in IndexedDB, in the app.
const VERSION = "__VERSION__";
const CACHE = `doorstep-field-${VERSION}`;
const SHELL = ["/", `/static/app.js?v=${VERSION}`, `/static/app.css?v=${VERSION}`,
  `/static/icon.svg?v=${VERSION}`, "/manifest.webmanifest"];

self.addEventListener("install", (event) => {
  // Not activated at once: the page asks the person, then tells this one to take over.
  event.waitUntil(caches.open(CACHE).then((cache) => cache.addAll(SHELL)));
});

self.addEventListener("activate", (event) => {
  event.waitUntil((async () => {
    for (const name of await caches.keys()) {
      if (name.startsWith("doorstep-field-") && name !== CACHE) await caches.delete(name);
    }
    await self.clients.claim();
  })());
});

self.addEventListener("message", (event) => {
  if (event.data === "take-over") self.skipWaiting();
});

self.addEventListener("fetch", (event) => {
  const url = new URL(event.request.url);
  if (event.request.method !== "GET" || url.origin !== self.location.origin) return;
  if (url.pathname.startsWith("/api/") || url.pathname.startsWith("/session")) return;
  if (url.pathname.startsWith("/static/")) {
    // Versioned, so never stale: kept once fetched (the QR decoder, fetched when a walk
    // list opens, is then there in the stairwell).
    event.respondWith((async () => {
      const hit = await caches.match(event.request);
      if (hit) return hit;
      const fresh = await fetch(event.request);
      if (fresh.ok && (url.search || url.pathname.startsWith("/static/vendor/"))) {
        await (await caches.open(CACHE)).put(event.request, fresh.clone());
      }
      return fresh;
    })());
    return;
  }
  if (event.request.mode === "navigate" || url.pathname === "/manifest.webmanifest") {
    event.respondWith((async () => {
      try {
        const fresh = await fetch(event.request);
        if (fresh.ok && url.pathname === "/") {
          const cache = await caches.open(CACHE);
          await cache.put("/", fresh.clone());
        }
        return fresh;
      } catch (offline) {
        return (await caches.match(url.pathname === "/manifest.webmanifest" ? url.pathname : "/"))
          || Response.error();
      }
    })());
  }
});
