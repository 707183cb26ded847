// The board live: the console's stream says "changed" when an event of this community
// arrives (at most once a second); the page then fetches its fresh part. No polling.
(function () {
  "use strict";
  const board = document.querySelector("[data-live-source]");
  if (!board || !window.EventSource) return;
  const state = document.getElementById("live-state");
  let fetching = false, again = false;

  async function refresh() {
    if (fetching) { again = true; return; }
    fetching = true;
    try {
      const response = await fetch(board.dataset.livePart, { credentials: "same-origin" });
      if (response.ok) board.innerHTML = await response.text();
      board.dataset.refreshed = String(Date.now());
    } finally {
      fetching = false;
      if (again) { again = false; refresh(); }
    }
  }

  const source = new EventSource(board.dataset.liveSource);
  source.addEventListener("open", () => { state.dataset.live = "on"; refresh(); });
  source.addEventListener("error", () => { state.dataset.live = "off"; });
  source.addEventListener("changed", refresh);
})();
