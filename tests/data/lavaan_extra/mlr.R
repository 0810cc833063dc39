# lavaan 0.7.2's MLR (robust standard errors, Yuan-Bentler scaled test) on some of the
# shared cases, with nlminb (the EM default stops earlier). Run from tests/data/lavaan with
# R_LIBS pointing at a build of lavaan 0.7.2:
#   Rscript ../lavaan_extra/mlr.R > ../lavaan_extra/mlr.json
suppressPackageStartupMessages({library(lavaan); library(jsonlite)})
cases <- c("demo_twolevel_missing", "demo_twolevel_fixedx", "paper_like", "demo_twolevel")
keys <- c("chisq", "df", "chisq.scaled", "df.scaled", "pvalue.scaled", "chisq.scaling.factor",
          "scaling.factor.h1", "scaling.factor.h0", "baseline.chisq.scaled",
          "baseline.chisq.scaling.factor", "cfi.scaled", "tli.scaled", "cfi.robust",
          "tli.robust", "rmsea.scaled", "rmsea.robust", "rmsea.ci.upper.scaled",
          "rmsea.ci.upper.robust", "rmsea.pvalue.scaled", "rmsea.pvalue.robust")
out <- list(lavaan_version = as.character(packageVersion("lavaan")), cases = list())
for (name in cases) {
  ref <- fromJSON(paste0(name, ".json"), simplifyVector = FALSE)
  cs <- ref$case
  d <- read.csv(cs$data)
  args <- c(list(model = cs$model, data = d, cluster = cs$cluster, missing = "ml",
                 estimator = "MLR", optim.method = "nlminb"), cs$options)
  fit <- do.call(sem, args)
  pe <- parameterEstimates(fit)
  imp <- lavInspect(fit, "implied")
  out$cases[[name]] <- list(
    logl = fitMeasures(fit, "logl")[[1]],
    measures = as.list(setNames(as.numeric(fitMeasures(fit, keys)), keys)),
    estimates = list(lhs = pe$lhs, op = pe$op, rhs = pe$rhs, level = pe$level,
                     est = pe$est, se = pe$se),
    first_order_diag = diag(lavInspect(fit, "information.first.order")),
    implied = imp)
}
cat(toJSON(out, auto_unbox = TRUE, digits = 15, pretty = TRUE, na = "null"), "\n")
