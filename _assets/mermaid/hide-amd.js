// mermaid.min.js bundles libraries that register themselves as anonymous AMD modules when
// RequireJS is present (pages with widgets load it). RequireJS then throws "Mismatched anonymous
// define()", which also stops the widget manager. Hide `define` while mermaid loads; init.js
// restores it.
window.__ftbookDefine = window.define;
window.define = undefined;
