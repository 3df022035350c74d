/* The camera scanner (/scan): read a GS1 Digital Link QR code or a GS1
 * DataMatrix with the phone's camera and open the lot's page.
 *
 * The decoder is the browser's BarcodeDetector when it reads both formats,
 * else the bundled ZXing (static/vendor/, loaded only then). What a code means
 * is decided by the server (/scan/code, the resolver's own GS1 parser); the
 * service worker (static/sw.js) keeps the answers and the last lot pages for
 * when the network is gone. See docs/scan.md, "Camera" and "Offline".
 */
(function () {
  "use strict";

  var root = document.getElementById("camera");
  if (!root) return;

  var FRAME_MS = 200; // one decode attempt per frame interval
  var IDLE_MS = 120000; // camera off after 2 minutes without a code (battery)
  var RETRY_MS = 2500; // a code that cannot be opened: scan on after this
  var LOTS_CACHE = "provenance-lots-v1"; // the service worker's saved lot pages
  var SAVED_HEADER = "X-Provenance-Saved";
  var TITLE_HEADER = "X-Provenance-Title";

  var video = document.getElementById("camera-view");
  var statusLine = document.getElementById("camera-status");
  var startButton = document.getElementById("camera-start");
  var t = root.dataset;
  var stream = null;
  var timer = null;
  var busy = false;
  var refused = null; // the last text that could not be opened, not retried at once
  var idleSince = 0;

  function say(text, warn) {
    statusLine.textContent = text;
    statusLine.className = warn ? "warn" : "note";
  }

  // --- the offline shell ---------------------------------------------------

  if ("serviceWorker" in navigator) {
    navigator.serviceWorker.register("/sw.js", { scope: "/" }).catch(function () {
      /* no offline shell (private mode, http): the scanner still works online */
    });
  }

  function showMissing() {
    var missing = new URLSearchParams(location.search).get("missing");
    if (!missing) return false;
    document.getElementById("camera-missing-path").textContent = missing;
    document.getElementById("camera-missing").hidden = false;
    return true;
  }

  function showSaved() {
    if (!("caches" in window)) return Promise.resolve();
    return caches
      .has(LOTS_CACHE)
      .then(function (has) {
        return has ? caches.open(LOTS_CACHE) : null;
      })
      .then(function (cache) {
        if (!cache) return [];
        return cache.keys().then(function (requests) {
          return Promise.all(
            requests.map(function (request) {
              return cache.match(request).then(function (response) {
                return { url: request.url, response: response };
              });
            })
          );
        });
      })
      .then(function (entries) {
        var list = document.getElementById("camera-saved-list");
        var section = document.getElementById("camera-saved");
        var pages = entries
          .filter(function (entry) {
            return entry.response && entry.response.headers.get(SAVED_HEADER);
          })
          .map(function (entry) {
            var headers = entry.response.headers;
            return {
              url: entry.url,
              saved: new Date(headers.get(SAVED_HEADER)),
              title: decodeURIComponent(headers.get(TITLE_HEADER) || "") || entry.url,
            };
          })
          .sort(function (a, b) {
            return b.saved - a.saved;
          });
        list.textContent = "";
        pages.forEach(function (page) {
          var item = document.createElement("li");
          var link = document.createElement("a");
          link.href = page.url;
          link.textContent = page.title;
          var when = document.createElement("span");
          when.className = "small";
          when.textContent =
            " — " + section.dataset.tSaved.replace(
              "{time}",
              page.saved.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" })
            );
          item.appendChild(link);
          item.appendChild(when);
          list.appendChild(item);
        });
        section.hidden = pages.length === 0;
      })
      .catch(function () {
        /* storage unavailable: nothing saved to list */
      });
  }

  // --- decoders ------------------------------------------------------------

  function loadScript(src) {
    return new Promise(function (resolve, reject) {
      var script = document.createElement("script");
      script.src = src;
      script.onload = resolve;
      script.onerror = reject;
      document.head.appendChild(script);
    });
  }

  function platformDetector() {
    if (!("BarcodeDetector" in window)) return Promise.resolve(null);
    return window.BarcodeDetector.getSupportedFormats()
      .then(function (formats) {
        if (formats.indexOf("qr_code") < 0 || formats.indexOf("data_matrix") < 0) return null;
        var detector = new window.BarcodeDetector({ formats: ["qr_code", "data_matrix"] });
        return {
          name: "BarcodeDetector",
          detect: function () {
            return detector.detect(video).then(function (codes) {
              return codes.length ? codes[0].rawValue : null;
            });
          },
        };
      })
      .catch(function () {
        return null;
      });
  }

  function bundledDetector() {
    return loadScript(t.decoderFile).then(function () {
      // This phone needs it: have the offline shell keep it.
      if ("serviceWorker" in navigator) {
        navigator.serviceWorker.ready.then(function (registration) {
          if (registration.active) registration.active.postMessage({ keep: t.decoderFile });
        });
      }
      var Z = window.ZXing;
      var hints = new Map();
      hints.set(Z.DecodeHintType.TRY_HARDER, true);
      // One reader per format: MultiFormatReader would also try formats we do
      // not want and log each failure to the console.
      var readers = [new Z.QRCodeReader(), new Z.DataMatrixReader()];
      var canvas = document.createElement("canvas");
      var context = canvas.getContext("2d", { willReadFrequently: true });
      return {
        name: "ZXing",
        detect: function () {
          var width = video.videoWidth;
          var height = video.videoHeight;
          if (!width || !height) return Promise.resolve(null);
          var scale = Math.min(1, 960 / Math.max(width, height));
          canvas.width = Math.round(width * scale);
          canvas.height = Math.round(height * scale);
          context.drawImage(video, 0, 0, canvas.width, canvas.height);
          var bitmap = new Z.BinaryBitmap(new Z.HybridBinarizer(new Z.HTMLCanvasElementLuminanceSource(canvas)));
          for (var i = 0; i < readers.length; i += 1) {
            try {
              return Promise.resolve(readers[i].decode(bitmap, hints).getText());
            } catch (error) {
              if (
                !(error instanceof Z.NotFoundException) &&
                !(error instanceof Z.ChecksumException) &&
                !(error instanceof Z.FormatException)
              ) {
                return Promise.reject(error);
              }
              // not this format, or no code in this frame: the next reader
            }
          }
          return Promise.resolve(null);
        },
      };
    });
  }

  // --- scanning ------------------------------------------------------------

  function stop() {
    if (timer !== null) clearTimeout(timer);
    timer = null;
    if (stream) stream.getTracks().forEach(function (track) { track.stop(); });
    stream = null;
    video.hidden = true;
    startButton.hidden = false;
  }

  function open(text, detector) {
    busy = true;
    say(t.tRead);
    fetch("/scan/code?text=" + encodeURIComponent(text), { headers: { Accept: "application/json" } })
      .then(function (response) {
        return response.json().then(function (body) {
          return { status: response.status, body: body };
        });
      })
      .then(function (answer) {
        if (answer.status === 200 && answer.body.path) {
          stop();
          location.assign(answer.body.path);
          return;
        }
        if (answer.status === 503) {
          say(t.tOffline, true); // the service worker: no network, code not kept
          showSaved();
        } else {
          if (answer.status === 400) refused = text; // the code's own fault: not again at once
          say(t.tBad + " " + (answer.body.detail || answer.body.error || answer.status), true);
        }
        later(detector, RETRY_MS);
      })
      .catch(function () {
        say(t.tOffline, true);
        showSaved();
        later(detector, RETRY_MS);
      });
  }

  function later(detector, ms) {
    busy = false;
    idleSince = Date.now();
    if (stream) timer = setTimeout(function () { tick(detector); }, ms);
  }

  function tick(detector) {
    timer = null;
    if (!stream || busy) return;
    if (Date.now() - idleSince > IDLE_MS) {
      stop();
      say(t.tPaused);
      return;
    }
    if (document.hidden) {
      later(detector, FRAME_MS * 5);
      return;
    }
    detector
      .detect()
      .then(function (text) {
        if (text && text !== refused) {
          open(text, detector);
        } else {
          timer = setTimeout(function () { tick(detector); }, FRAME_MS);
        }
      })
      .catch(function () {
        timer = setTimeout(function () { tick(detector); }, FRAME_MS);
      });
  }

  var detectorReady = null;

  function detectorOnce() {
    if (!detectorReady) {
      detectorReady = platformDetector().then(function (detector) {
        return detector || bundledDetector();
      });
      detectorReady.catch(function () {
        detectorReady = null; // try loading again on the next start
      });
    }
    return detectorReady;
  }

  function start() {
    startButton.hidden = true;
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      say(window.isSecureContext ? t.tNocamera : t.tInsecure, true);
      return;
    }
    say(t.tStarting);
    var camera = navigator.mediaDevices.getUserMedia({
      audio: false,
      video: { facingMode: { ideal: "environment" }, width: { ideal: 1280 }, height: { ideal: 720 } },
    });
    Promise.all([camera, detectorOnce().catch(function () { return null; })])
      .then(function (got) {
        stream = got[0];
        var detector = got[1];
        if (!detector) {
          stop();
          say(t.tNodecoder, true);
          return;
        }
        root.dataset.decoder = detector.name;
        video.srcObject = stream;
        video.hidden = false;
        video.style.width = "100%";
        video.style.maxHeight = "60vh";
        video.style.background = "#000";
        return video.play().then(function () {
          say(t.tAim);
          idleSince = Date.now();
          tick(detector);
        });
      })
      .catch(function (error) {
        stop();
        var name = error && error.name;
        if (name === "NotAllowedError" || name === "SecurityError") say(t.tDenied, true);
        else if (name === "NotFoundError" || name === "OverconstrainedError") say(t.tNocamera, true);
        else say(t.tFailed, true);
      });
  }

  startButton.addEventListener("click", start);
  window.addEventListener("pagehide", stop);
  showSaved();
  if (showMissing()) {
    // Came here because a page is not saved: read why first, then scan on.
    startButton.hidden = false;
    say(t.tReady);
  } else {
    start();
  }
})();
