// Render the maths of every page (pymdownx.arithmatex output, docstrings and notebooks) with the
// vendored KaTeX; Material's instant navigation re-runs it through document$.
document$.subscribe(({ body }) => {
  renderMathInElement(body, {
    delimiters: [
      { left: "$$", right: "$$", display: true },
      { left: "$", right: "$", display: false },
      { left: "\\(", right: "\\)", display: false },
      { left: "\\[", right: "\\]", display: true },
    ],
    throwOnError: false,
  });
});
