// Starts Swagger UI on /docs. It lives in a file of its own, not in an inline
// <script>, so that the page works under a Content-Security-Policy that
// allows no inline script.
"use strict";
window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({
    url: "/openapi.yaml",
    dom_id: "#swagger-ui",
    deepLinking: true,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
    // Never send the document to swagger.io's online validator.
    validatorUrl: null,
  });
});
