// Progressive enhancement for the scan page: a read-aloud button where the
// browser can speak. The page is complete without this file.
(function () {
  "use strict";
  var button = document.getElementById("read-aloud");
  if (!button || !("speechSynthesis" in window) || !window.SpeechSynthesisUtterance) return;
  button.hidden = false;
  button.addEventListener("click", function () {
    var synth = window.speechSynthesis;
    if (synth.speaking) { synth.cancel(); return; }
    var parts = [];
    document.querySelectorAll("[data-speak]").forEach(function (section) {
      parts.push(section.innerText);
    });
    var utterance = new SpeechSynthesisUtterance(parts.join(". "));
    utterance.lang = button.getAttribute("data-lang") || document.documentElement.lang;
    utterance.rate = 0.9;
    synth.speak(utterance);
  });
})();
