/* The offline shell of the scanner (served as /sw.js, scope "/").
 *
 * Kept on the phone: the scanner page and what it needs (SHELL_URLS, and any
 * /static/ file once fetched, the bundled decoder where it is used), the last SAVED_LOTS lot pages viewed, and the
 * answers of /scan/code for the last SAVED_CODES codes read.
 *
 * The network always comes first. A lot page comes from the phone only when
 * the network fails or takes longer than NETWORK_WAIT_MS, and then it is
 * marked at the top and in its status box: "saved <time>, may be out of date",
 * not live, a recall issued since is not shown. A saved copy is never served
 * as if it were fresh, and nothing but the consumer pages, the scanner and
 * static files is touched (the portal and the API pass straight through and
 * are never stored). See docs/scan.md, "Offline".
 */
"use strict";

// A new version of what is kept gets new names; "activate" drops the old ones.
var SHELL_CACHE = "provenance-shell-v1";
var LOTS_CACHE = "provenance-lots-v1"; // camera.js lists it
var CODES_CACHE = "provenance-codes-v1";
var SAVED_LOTS = 10;
var SAVED_CODES = 50;
var NETWORK_WAIT_MS = 6000; // a poor network: after this, the saved copy (marked)
var SAVED_HEADER = "X-Provenance-Saved";
var TITLE_HEADER = "X-Provenance-Title";
var OFFLINE_HEADER = "X-Provenance-Offline-Copy";
var SHELL_URLS = ["/scan", "/static/camera.js", "/static/icons/icon-192.png", "/manifest.webmanifest"];
// The bundled decoder is kept only on phones that need it: camera.js asks for it
// (a "keep" message) when the browser has no BarcodeDetector for both formats.
var IMMUTABLE = ["/static/vendor/", "/static/icons/"]; // versioned or fixed: cache first

var WORDS = {
  en: {
    saved: "Saved on this phone {time}, may be out of date.",
    notLive:
      "The site could not be reached (no network, too slow, or a server error), so this is the copy kept when this page was last opened. It is not live: a recall or hold issued since then is not shown.",
    statusNote: "Not live: as saved {time}.",
    again: "Try again",
    scan: "Scan another code",
    title: "(saved) ",
    offlineCode: "No network: this code cannot be looked up now.",
  },
  zh: {
    saved: "本机保存于 {time}，可能已过期。",
    notLive:
      "无法连接网站（没有网络、网络太慢或服务器出错），这是上次打开此页时保存的副本，不是实时信息：此后发布的召回或暂扣不会显示。",
    statusNote: "非实时：保存于 {time}。",
    again: "重试",
    scan: "扫描其他代码",
    title: "（已保存）",
    offlineCode: "没有网络：现在无法查询此代码。",
  },
};

self.addEventListener("install", function (event) {
  event.waitUntil(
    caches
      .open(SHELL_CACHE)
      .then(function (cache) {
        return cache.addAll(SHELL_URLS);
      })
      .then(function () {
        return self.skipWaiting();
      })
  );
});

self.addEventListener("activate", function (event) {
  var current = [SHELL_CACHE, LOTS_CACHE, CODES_CACHE];
  event.waitUntil(
    caches
      .keys()
      .then(function (names) {
        return Promise.all(
          names
            .filter(function (name) {
              return name.indexOf("provenance-") === 0 && current.indexOf(name) < 0;
            })
            .map(function (name) {
              return caches.delete(name);
            })
        );
      })
      .then(function () {
        return self.clients.claim();
      })
  );
});

self.addEventListener("message", function (event) {
  var keep = event.data && event.data.keep;
  if (typeof keep !== "string" || keep.indexOf("/static/vendor/") !== 0) return;
  event.waitUntil(
    caches.open(SHELL_CACHE).then(function (cache) {
      return cache.match(keep).then(function (kept) {
        return kept || cache.add(keep);
      });
    })
  );
});

self.addEventListener("fetch", function (event) {
  var request = event.request;
  if (request.method !== "GET") return;
  var url = new URL(request.url);
  if (url.origin !== self.location.origin) return;
  if (isLotPage(request, url)) {
    event.respondWith(lotPage(event, url));
  } else if (url.pathname === "/scan/code") {
    event.respondWith(scannedCode(event, url));
  } else if (url.pathname === "/scan" || SHELL_URLS.indexOf(url.pathname) >= 0) {
    event.respondWith(shellFile(event, url));
  } else if (url.pathname.indexOf("/static/") === 0) {
    event.respondWith(shellFile(event, url));
  }
  // Anything else (portal, API, log, exports) is not ours: the browser fetches it.
});

/* Keep the worker alive for `promise` (saving a page). An answer that comes
 * after the page was served may find the event finished: it is saved anyway
 * while the worker runs, and otherwise on the next visit. */
function extend(event, promise) {
  try {
    event.waitUntil(promise);
  } catch (finished) {
    promise.catch(function () {});
  }
}

function isLotPage(request, url) {
  if (request.mode !== "navigate" || url.pathname.indexOf("/01/") !== 0) return false;
  var linkType = url.searchParams.get("linkType");
  return linkType === null || linkType === "gs1:pip";
}

/* The network's answer, or null when it failed or took longer than `wait`;
 * `late` gets the answer if it comes after all (to keep it for next time). */
function network(request, wait, late) {
  return new Promise(function (resolve) {
    var settled = false;
    var timer = setTimeout(function () {
      settled = true;
      resolve(null);
    }, wait);
    fetch(request).then(
      function (response) {
        clearTimeout(timer);
        if (settled) {
          if (late) late(response);
        } else {
          settled = true;
          resolve(response);
        }
      },
      function () {
        clearTimeout(timer);
        if (!settled) {
          settled = true;
          resolve(null);
        }
      }
    );
  });
}

// --- lot pages ---------------------------------------------------------------

function lotPage(event, url) {
  var request = event.request;
  var keep = function (response) {
    if (response.ok && (response.headers.get("Content-Type") || "").indexOf("text/html") === 0) {
      return saveLot(url, response.clone());
    }
    return Promise.resolve();
  };
  var lateSave = function (response) {
    extend(event, keep(response));
  };
  // Always revalidated with the server, whatever cache mode the navigation came
  // with (history navigations may prefer the browser's HTTP cache): the only
  // copy shown without the network is the marked one. (The request stops being
  // a "navigate" one; redirects still come back to the browser as they are.)
  var live = new Request(request, { cache: "no-cache" });
  return network(live, NETWORK_WAIT_MS, lateSave).then(function (response) {
    if (response && response.status < 500) {
      extend(event, keep(response));
      return response; // the server's own answer (a 404 included): live
    }
    return savedLot(url).then(function (saved) {
      if (saved) return saved;
      if (response) return response; // a server error, and nothing saved
      return Response.redirect("/scan?missing=" + encodeURIComponent(url.pathname), 303);
    });
  });
}

function unescapeHtml(text) {
  return text
    .replace(/&lt;/g, "<")
    .replace(/&gt;/g, ">")
    .replace(/&quot;/g, '"')
    .replace(/&#39;|&#x27;/g, "'")
    .replace(/&amp;/g, "&");
}

function escapeHtml(text) {
  return String(text)
    .replace(/&/g, "&amp;")
    .replace(/</g, "&lt;")
    .replace(/>/g, "&gt;")
    .replace(/"/g, "&quot;");
}

function saveLot(url, response) {
  return response.text().then(function (html) {
    var title = /<title>([^<]*)<\/title>/.exec(html);
    var headers = new Headers({ "Content-Type": "text/html; charset=utf-8" });
    var csp = response.headers.get("Content-Security-Policy");
    if (csp) headers.set("Content-Security-Policy", csp);
    headers.set(SAVED_HEADER, new Date().toISOString());
    headers.set(TITLE_HEADER, encodeURIComponent(title ? unescapeHtml(title[1]).trim() : url.pathname));
    return caches.open(LOTS_CACHE).then(function (cache) {
      // One copy per lot (the last one viewed, whatever its language or label data).
      return cache
        .delete(url.href, { ignoreSearch: true })
        .then(function () {
          return cache.put(url.href, new Response(html, { status: 200, headers: headers }));
        })
        .then(function () {
          return prune(cache, SAVED_LOTS);
        });
    });
  });
}

/* Keep the `limit` most recently saved entries of a cache: keys() lists them in
 * the order they were put (a put replaces an entry by appending it). */
function prune(cache, limit) {
  return cache.keys().then(function (requests) {
    return Promise.all(
      requests.slice(0, Math.max(0, requests.length - limit)).map(function (request) {
        return cache.delete(request);
      })
    );
  });
}

function savedLot(url) {
  return caches
    .open(LOTS_CACHE)
    .then(function (cache) {
      return cache.match(url.href).then(function (exact) {
        return exact || cache.match(url.href, { ignoreSearch: true });
      });
    })
    .then(function (saved) {
      if (!saved) return null;
      return saved.text().then(function (html) {
        return markedCopy(html, saved.headers);
      });
    });
}

/* The saved page with what makes it plainly not live: a banner first in
 * <main>, a line in its status box and "(saved)" in its title. */
function markedCopy(html, savedHeaders) {
  var lang = /<html[^>]*\blang="zh/.test(html) ? "zh" : "en";
  var words = WORDS[lang];
  var savedAt = savedHeaders.get(SAVED_HEADER);
  var time = new Date(savedAt).toLocaleString(lang === "zh" ? "zh-CN" : undefined, {
    dateStyle: "medium",
    timeStyle: "short",
  });
  var banner =
    '<section id="offline-copy" class="status status-unknown" role="alert">' +
    '<p class="status-word">' + escapeHtml(words.saved.replace("{time}", time)) + "</p>" +
    "<p>" + escapeHtml(words.notLive) + "</p>" +
    '<p><a href="">' + escapeHtml(words.again) + "</a> · " +
    '<a href="/scan">' + escapeHtml(words.scan) + "</a></p></section>";
  var note = '<p class="warn offline-note">' + escapeHtml(words.statusNote.replace("{time}", time)) + "</p>";
  var marked = html.replace(/<main([^>]*)>/, function (tag) {
    return tag + banner;
  });
  if (marked === html) marked = banner + html; // no <main>: the banner still comes first
  marked = marked.replace(/(<section id="status"[^>]*>)/, function (tag) {
    return tag + note;
  });
  marked = marked.replace(/<title>/, "<title>" + escapeHtml(words.title));
  var headers = new Headers({
    "Content-Type": "text/html; charset=utf-8",
    "Cache-Control": "no-store",
  });
  var csp = savedHeaders.get("Content-Security-Policy");
  if (csp) headers.set("Content-Security-Policy", csp);
  headers.set(OFFLINE_HEADER, "saved=" + savedAt);
  return new Response(marked, { status: 200, headers: headers });
}

// --- what a scanned code opens -----------------------------------------------

function scannedCode(event, url) {
  var request = event.request;
  var wantsJson = (request.headers.get("Accept") || "").indexOf("application/json") >= 0;
  var keep = function (response) {
    if (!wantsJson || response.status !== 200) return Promise.resolve();
    var copy = response.clone();
    return copy.text().then(function (body) {
      var headers = new Headers({ "Content-Type": "application/json" });
      headers.set(SAVED_HEADER, new Date().toISOString());
      return caches.open(CODES_CACHE).then(function (cache) {
        return cache.put(url.href, new Response(body, { headers: headers })).then(function () {
          return prune(cache, SAVED_CODES);
        });
      });
    });
  };
  return network(request, NETWORK_WAIT_MS, function (late) {
    extend(event, keep(late));
  }).then(function (response) {
    if (response && response.status < 500) {
      extend(event, keep(response));
      return response;
    }
    // A code's answer depends on its text alone (docs/scan.md): a kept one is still true.
    return caches.match(url.href, { cacheName: CODES_CACHE }).then(function (kept) {
      if (kept) {
        if (wantsJson) return kept;
        return kept.json().then(function (body) {
          return Response.redirect(body.path, 303);
        });
      }
      if (response) return response;
      if (!wantsJson) return Response.redirect("/scan?missing=" + encodeURIComponent(url.search), 303);
      var words = WORDS.en;
      return new Response(JSON.stringify({ error: "offline", detail: words.offlineCode }), {
        status: 503,
        headers: { "Content-Type": "application/json" },
      });
    });
  });
}

// --- the scanner and static files --------------------------------------------

function shellFile(event, url) {
  var request = event.request;
  var immutable = IMMUTABLE.some(function (prefix) {
    return url.pathname.indexOf(prefix) === 0;
  });
  var fromCache = function () {
    return caches.open(SHELL_CACHE).then(function (cache) {
      return cache.match(request, { ignoreSearch: url.pathname === "/scan" });
    });
  };
  var keep = function (response) {
    if (!response.ok || response.type !== "basic") return Promise.resolve();
    var copy = response.clone();
    return caches.open(SHELL_CACHE).then(function (cache) {
      return cache.put(url.pathname === "/scan" ? "/scan" : request, copy);
    });
  };
  if (immutable) {
    return fromCache().then(function (kept) {
      return kept || fetch(request).then(function (response) {
        extend(event, keep(response));
        return response;
      });
    });
  }
  return network(request, NETWORK_WAIT_MS, function (late) {
    extend(event, keep(late));
  }).then(function (response) {
    if (response && response.ok) {
      extend(event, keep(response));
      return response;
    }
    return fromCache().then(function (kept) {
      return kept || response || Response.error();
    });
  });
}
