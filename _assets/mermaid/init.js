// Render ```mermaid code blocks client-side with the vendored mermaid (classic script, works from file://).
// The notebook keeps a plain ```mermaid fence, which Jupyter, Colab and GitHub draw natively;
// in the book it arrives as a highlighted code block, which we swap for a diagram here.
if (window.__ftbookDefine !== undefined) {  // see hide-amd.js
  window.define = window.__ftbookDefine;
  delete window.__ftbookDefine;
}
document.addEventListener("DOMContentLoaded", function () {
  if (typeof mermaid === "undefined") { return; }
  var blocks = document.querySelectorAll("div.highlight-mermaid");
  if (!blocks.length) { return; }
  blocks.forEach(function (block) {
    var pre = document.createElement("pre");
    pre.className = "mermaid";
    pre.textContent = block.querySelector("pre").textContent;
    block.replaceWith(pre);
  });
  mermaid.initialize({ startOnLoad: false, securityLevel: "strict" });
  mermaid.run({ querySelector: "pre.mermaid" });
});
