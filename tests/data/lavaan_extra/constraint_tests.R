# lavaan 0.7.2's score and Wald tests of equality constraints beyond those kept in
# constraints.json, on demo_twolevel_missing (missing = "ml", fixed.x = FALSE,
# optim.method = "nlminb"), with the labelled base model of constraints.R:
#   ml_linear      estimator ML, l2 == m2 and b1 == 2*b2 - b3: lavTestScore() with
#                  cumulative = TRUE and epc = TRUE (free rows of the epc table only), with
#                  information = "observed", and with release = 2
#   ml_shared      estimator ML, the loading of y2 labelled a at both levels (a shared
#                  label, which lavaan turns into an explicit .pA. == .pB. constraint) and
#                  b1 == 2*b2 - b3: lavTestScore()
#   ml_wald        lavTestWald() on the unconstrained ML fit for two constraints at once
#                  and for a nonlinear one, and on the ml_linear fit for l3 == m3
#   mlr_linear     estimator MLR, the constraints of ml_linear: lavTestScore() (with the
#                  scaled, adjusted and robust versions of Satorra 2000)
#   mlr_wald       estimator MLR, unconstrained: lavTestWald(constraints = "l2 == m2")
# Run with R_LIBS pointing at a build of lavaan 0.7.2 (about 3 minutes: the MLR fits):
#   Rscript tests/data/lavaan_extra/constraint_tests.R
# It writes constraint_tests.json next to itself.
suppressPackageStartupMessages({library(lavaan); library(jsonlite)})

script_arg <- grep("^--file=", commandArgs(trailingOnly = FALSE), value = TRUE)
here <- if (length(script_arg)) {
  dirname(normalizePath(sub("^--file=", "", script_arg[1])))
} else getwd()
d <- read.csv(file.path(here, "..", "lavaan", "demo_twolevel_missing.csv"))
out_file <- file.path(here, "constraint_tests.json")

base <- "
level: 1
  fw =~ y1 + l2*y2 + l3*y3
  fw ~ b1*x1 + b2*x2 + b3*x3
level: 2
  fb =~ y1 + m2*y2 + m3*y3
  fb ~ g1*w1 + g2*w2
"
linear <- "  l2 == m2\n  b1 == 2*b2 - b3\n"
shared <- paste0(gsub("m2\\*y2", "a*y2", gsub("l2\\*y2", "a*y2", base)),
                 "  b1 == 2*b2 - b3\n")
fit_of <- function(model, estimator) {
  suppressWarnings(sem(model, data = d, cluster = "cluster", missing = "ml",
                       fixed.x = FALSE, optim.method = "nlminb", estimator = estimator))
}
columns_of <- function(df) {
  df <- as.data.frame(df)
  out <- lapply(df, function(v) I(if (is.factor(v)) as.character(v) else as.vector(v)))
  names(out) <- names(df)
  out
}
score_of <- function(sc) {
  res <- lapply(sc[intersect(c("test", "uni", "cumulative"), names(sc))], columns_of)
  if (!is.null(sc$epc)) {
    e <- sc$epc[sc$epc$free > 0, intersect(c("lhs", "op", "rhs", "level", "label", "est",
                                             "epc", "epv"), names(sc$epc))]
    res$epc <- columns_of(e)
  }
  res
}
wald_of <- function(fit, constraints) {
  c(list(constraints = constraints), lapply(lavTestWald(fit, constraints = constraints),
                                            as.vector))
}

t_start <- Sys.time()
out <- list(lavaan_version = as.character(packageVersion("lavaan")),
            R_version = R.version.string, data = "demo_twolevel_missing.csv",
            base_model = base, linear = linear, shared_model = shared)

lin <- fit_of(paste0(base, linear), "ML")
out$ml_linear <- list(
  logl = fitMeasures(lin, "logl")[[1]],
  cumulative_epc = score_of(lavTestScore(lin, cumulative = TRUE, epc = TRUE)),
  observed = score_of(lavTestScore(lin, information = "observed")),
  release2 = score_of(lavTestScore(lin, release = 2)))
sh <- fit_of(shared, "ML")
out$ml_shared <- list(logl = fitMeasures(sh, "logl")[[1]], score = score_of(lavTestScore(sh)))
un <- fit_of(base, "ML")
out$ml_wald <- list(
  two = wald_of(un, "l2 == m2\n b1 == 2*b2 - b3"),
  nonlinear = wald_of(un, "l3 == l2^2"),
  on_linear = wald_of(lin, "l3 == m3"))
message(sprintf("ML: %.0f s", as.numeric(difftime(Sys.time(), t_start, units = "secs"))))
linr <- fit_of(paste0(base, linear), "MLR")
out$mlr_linear <- list(logl = fitMeasures(linr, "logl")[[1]], score = score_of(lavTestScore(linr)))
unr <- fit_of(base, "MLR")
out$mlr_wald <- wald_of(unr, "l2 == m2")
out$total_seconds <- as.numeric(difftime(Sys.time(), t_start, units = "secs"))
writeLines(toJSON(out, auto_unbox = TRUE, digits = 15, pretty = TRUE, na = "null",
                  null = "null"), out_file)
message("wrote ", out_file, sprintf(" (%.0f s)", out$total_seconds))
