// Times in the viewer's own time zone (docs/scan.md, "Times").
//
// The server writes every time in the zone it knows for the reader: ?tz=, else
// the "tz" cookie, else its configured default (provenance serve --default-tz),
// else UTC; each <time> carries the instant (datetime) and the UTC time on hover
// (title). Without a cookie, this script remembers the browser's zone in it, so
// that the next page comes in that zone from the server, and:
// - on a page whose script tag says data-rewrite (the scan page), rewrites the
//   <time data-local> elements and the zone's name in place, at once, with no
//   reload (the charts' axes keep the zone they name until the next page);
// - elsewhere (the portal), reloads once if the zone differs from the page's.
(function () {
  var script = document.currentScript;
  if (!script) return;
  if (document.cookie.split("; ").some(function (c) { return c.indexOf("tz=") === 0; })) return;
  var zone = "";
  try { zone = Intl.DateTimeFormat().resolvedOptions().timeZone || ""; } catch (e) { return; }
  if (!/^[A-Za-z0-9_+\-\/]{1,64}$/.test(zone)) return;
  document.cookie = "tz=" + zone + "; path=/; max-age=31536000; samesite=lax";
  var pageZone = script.getAttribute("data-zone") || "UTC";
  if (zone === pageZone) return;
  if (!script.hasAttribute("data-rewrite")) {
    // Reload only if the cookie stuck (no loop when cookies are off).
    if (document.cookie.indexOf("tz=") !== -1) location.reload();
    return;
  }
  // The server's forms: "21 Sep 2026, 15:05" (British order, 24 h), "2026年9月21日 15:05".
  var lang = document.documentElement.lang || "en";
  if (lang.indexOf("en") === 0) lang = "en-GB";
  var format;
  try {
    format = new Intl.DateTimeFormat(lang, {
      timeZone: zone, year: "numeric", month: "short", day: "numeric",
      hour: "2-digit", minute: "2-digit", hourCycle: "h23"
    });
  } catch (e) { return; }
  var rewrite = function () {
    var times = document.querySelectorAll("time[datetime][data-local]");
    for (var i = 0; i < times.length; i++) {
      var at = new Date(times[i].getAttribute("datetime"));
      if (isNaN(at.getTime())) continue;
      var text = format.format(at);
      if (times[i].getAttribute("data-local") === "zoned") text += " (" + zone + ")";
      times[i].textContent = text;
    }
    var names = document.querySelectorAll("[data-zone-name]");
    for (var j = 0; j < names.length; j++) names[j].textContent = zone;
  };
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", rewrite);
  else rewrite();
})();
