# lavaan 0.7.2's printed summaries, the layout mlmiss.report follows.
# Run from this folder: R_LIBS=/tmp/lav072/lib Rscript make.R
library(lavaan)
model <- "
level: 1
  fw =~ y1 + y2 + y3
  fw ~ x1 + x2 + x3
level: 2
  fb =~ y1 + y2 + y3
  fb ~ w1 + w2
"
labelled <- "
level: 1
  fw =~ y1 + a*y2 + a*y3
  fw ~ x1 + x2 + x3
level: 2
  fb =~ y1 + y2 + y3
  fb ~ w1 + w2
"
d <- read.csv("../lavaan/demo_twolevel_missing.csv")
# three empty rows and a cluster with both between-only values missing
e <- d
e[1:3, c("y1", "y2", "y3", "x1", "x2", "x3")] <- NA
e[e$cluster == 5, c("w1", "w2")] <- NA

runs <- list(
  list(file = "ml_std_r2.txt", model = model, data = d,
       args = list(fixed.x = FALSE), summary = list(fit.measures = TRUE, standardized = TRUE, rsquare = TRUE)),
  list(file = "fixedx.txt", model = model, data = d,
       args = list(fixed.x = TRUE), summary = list(fit.measures = TRUE)),
  list(file = "mlr.txt", model = model, data = d,
       args = list(fixed.x = FALSE, estimator = "MLR"), summary = list(fit.measures = TRUE)),
  list(file = "labels_empty.txt", model = labelled, data = e,
       args = list(fixed.x = FALSE), summary = list(fit.measures = FALSE))
)
for (run in runs) {
  fit <- suppressWarnings(do.call(sem, c(list(model = run$model, data = run$data,
                                              cluster = "cluster", missing = "ml"),
                                         run$args)))
  text <- capture.output(do.call(summary, c(list(fit), run$summary)))
  writeLines(text, run$file)
}
