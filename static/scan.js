// Progressive enhancement for the scan page: a read-aloud button where the
// browser can speak. The page is complete without this file.
//
// Read-aloud speaks the page's language only (docs/scan.md, "Read aloud"): the
// server words every reason in the page's language and marks text a person
// typed (a product's or a party's name, a recall's reason) with the language
// it is in (lang="…"); this script speaks each run of text in the language
// of the element it sits in, as its own utterance, so a Chinese voice never
// reads English and the other way round. An element may say how it is to be
// read (data-speak-as, e.g. "GTIN" read as the page's word for it) or be left
// out (data-speak-skip); hidden elements, charts and buttons are left out.
(function () {
  "use strict";
  var button = document.getElementById("read-aloud");
  if (!button || !("speechSynthesis" in window) || !window.SpeechSynthesisUtterance) return;
  var pageLang = button.getAttribute("data-lang") || document.documentElement.lang || "en";
  var SKIP = { SCRIPT: 1, STYLE: 1, SVG: 1, BUTTON: 1, FIGURE: 1, TEMPLATE: 1 };
  var BLOCK = /^(P|LI|DT|DD|H[1-6]|DIV|UL|OL|DL|SECTION|ARTICLE|TR)$/;

  // Runs of text with their language, in reading order; null marks a pause.
  function runs(node, lang, out) {
    if (node.nodeType === 3) {
      var text = node.nodeValue.replace(/\s+/g, " ");
      if (text.trim()) out.push({ text: text, lang: lang });
      return;
    }
    if (node.nodeType !== 1) return;
    var tag = node.tagName.toUpperCase();
    if (SKIP[tag] || node.hidden || node.hasAttribute("data-speak-skip") ||
        node.getAttribute("aria-hidden") === "true") return;
    var own = node.getAttribute("lang");
    if (own) lang = own;
    var block = BLOCK.test(tag);
    if (block) out.push(null);
    if (node.hasAttribute("data-speak-as")) {
      out.push({ text: node.getAttribute("data-speak-as"), lang: pageLang });
    } else {
      for (var child = node.firstChild; child; child = child.nextSibling) runs(child, lang, out);
    }
    if (block) out.push(null);
  }

  // Consecutive runs in one language make one utterance; pauses end a sentence.
  function utterances() {
    var parts = [];
    document.querySelectorAll("[data-speak]").forEach(function (section) {
      runs(section, section.closest("[lang]") ? section.closest("[lang]").getAttribute("lang") : pageLang, parts);
      parts.push(null);
    });
    var out = [];
    var current = null;
    var pause = false;
    parts.forEach(function (part) {
      if (part === null) { pause = true; return; }
      var lang = sameLanguage(part.lang, pageLang) ? pageLang : part.lang;
      if (current && current.lang === lang) {
        current.text += (pause ? ". " : "") + part.text;
      } else {
        current = { text: part.text, lang: lang };
        out.push(current);
      }
      pause = false;
    });
    return out.map(function (u) {
      return { text: u.text.replace(/\s+/g, " ").replace(/(\.\s*)+/g, ". ").trim(), lang: u.lang };
    }).filter(function (u) { return u.text && u.text !== "."; });
  }

  function sameLanguage(a, b) {
    return (a || "").split("-")[0].toLowerCase() === (b || "").split("-")[0].toLowerCase();
  }

  button.hidden = false;
  button.addEventListener("click", function () {
    var synth = window.speechSynthesis;
    if (synth.speaking || synth.pending) { synth.cancel(); return; }
    utterances().forEach(function (u) {
      var utterance = new SpeechSynthesisUtterance(u.text);
      utterance.lang = u.lang;
      utterance.rate = 0.9;
      synth.speak(utterance);
    });
  });
})();
