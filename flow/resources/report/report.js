// Render self-check: after every image has loaded (all are embedded data URIs),
// record on the body element how many decoded and how many tables exist, so a headless
// browser (tests/test_report.py) can verify the rendering from the DOM.
(function () {
  function record() {
    var imgs = document.images, decoded = 0, broken = [];
    for (var i = 0; i < imgs.length; i++) {
      if (imgs[i].complete && imgs[i].naturalWidth > 0) { decoded++; }
      else { broken.push(imgs[i].getAttribute("alt") || String(i)); }
    }
    var b = document.body;
    b.setAttribute("data-images-total", String(imgs.length));
    b.setAttribute("data-images-decoded", String(decoded));
    b.setAttribute("data-images-broken", broken.join(" | "));
    b.setAttribute("data-tables", String(document.querySelectorAll("table").length));
    b.setAttribute("data-sections", String(document.querySelectorAll("main > section[id]").length));
    b.setAttribute("data-render-check", "done");
  }
  window.addEventListener("load", record);
})();
