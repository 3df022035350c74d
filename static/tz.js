// Remember the browser's time zone once, so the portal shows times in it
// (provenance/web/wording.py reads the "tz" cookie; without it, times are UTC).
(function () {
  if (document.cookie.split("; ").some(function (c) { return c.indexOf("tz=") === 0; })) return;
  var zone = "";
  try { zone = Intl.DateTimeFormat().resolvedOptions().timeZone || ""; } catch (e) { return; }
  if (!/^[A-Za-z0-9_+\-\/]{1,64}$/.test(zone) || zone === "UTC") return;
  document.cookie = "tz=" + zone + "; path=/; max-age=31536000; samesite=lax";
  // Reload only if the cookie stuck (no loop when cookies are off).
  if (document.cookie.indexOf("tz=") !== -1) location.reload();
})();
