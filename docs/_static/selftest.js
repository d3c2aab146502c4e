// The site's self-test, for tests/test_docs.py. Opened as page.html?selftest,
// a page loads every image at once (none lazily) and, when all have loaded or
// failed, writes into <pre id="docs-selftest"> (hidden) the JSON list of its
// images with whether each decoded, and the script errors it saw. Without
// ?selftest it does nothing.
(function () {
  "use strict";
  if (!/[?&]selftest\b/.test(window.location.search)) {
    return;
  }
  var errors = [];
  window.addEventListener("error", function (event) {
    errors.push(String(event.message || event.type) + " (" + (event.filename || "") + ":" + (event.lineno || 0) + ")");
  });
  window.addEventListener("load", function () {
    var waits = Array.prototype.map.call(document.images, function (img) {
      return new Promise(function (done) {
        function check() {
          done({src: img.getAttribute("src"), ok: img.naturalWidth > 0});
        }
        if (img.complete) {
          check();
        } else {
          img.addEventListener("load", check);
          img.addEventListener("error", check);
          img.loading = "eager";
        }
      });
    });
    Promise.all(waits).then(function (images) {
      var out = document.createElement("pre");
      out.id = "docs-selftest";
      out.hidden = true;
      out.textContent = JSON.stringify({images: images, errors: errors});
      document.body.appendChild(out);
    });
  });
})();
