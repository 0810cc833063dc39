# lavaan 0.7.2's likelihood-ratio test of nested models, lavTestLRT(), on
# demo_twolevel_missing: the shared model (m1), its level-1 loadings of y2 and y3 set equal
# (m2, one df more) and, on top of that, the level-2 effect of w2 fixed at 0 (m3, one df
# more again), each fitted with estimator "ML" and "MLR" (missing = "ml", fixed.x = FALSE,
# nlminb). Run from tests/data/lavaan with R_LIBS pointing at a build of lavaan 0.7.2:
#   Rscript ../lavaan_extra/lrt.R > ../lavaan_extra/lrt.json
suppressPackageStartupMessages({library(lavaan); library(jsonlite)})
models <- list(
  m1 = "
level: 1
  fw =~ y1 + y2 + y3
  fw ~ x1 + x2 + x3
level: 2
  fb =~ y1 + y2 + y3
  fb ~ w1 + w2
",
  m2 = "
level: 1
  fw =~ y1 + a*y2 + a*y3
  fw ~ x1 + x2 + x3
level: 2
  fb =~ y1 + y2 + y3
  fb ~ w1 + w2
",
  m3 = "
level: 1
  fw =~ y1 + a*y2 + a*y3
  fw ~ x1 + x2 + x3
level: 2
  fb =~ y1 + y2 + y3
  fb ~ w1 + 0*w2
")
d <- read.csv("demo_twolevel_missing.csv")
keys <- c("npar", "logl", "chisq", "df", "aic", "bic")
table_of <- function(tab) {
  out <- list(models = rownames(tab), df = tab[["Df"]], aic = tab[["AIC"]],
              bic = tab[["BIC"]], chisq = tab[["Chisq"]],
              chisq_diff = tab[["Chisq diff"]], df_diff = tab[["Df diff"]],
              pvalue = tab[["Pr(>Chisq)"]], heading = attr(tab, "heading"))
  if (!is.null(attr(tab, "scale"))) out$scale <- attr(tab, "scale")
  out
}
out <- list(lavaan_version = as.character(packageVersion("lavaan")),
            data = "demo_twolevel_missing.csv", cluster = "cluster",
            options = list(missing = "ml", fixed.x = FALSE, optim.method = "nlminb"),
            models = models, estimators = list())
for (estimator in c("ML", "MLR")) {
  fits <- list()
  measures <- list()
  for (name in names(models)) {
    seconds <- system.time(
      fits[[name]] <- sem(models[[name]], data = d, cluster = "cluster", missing = "ml",
                          fixed.x = FALSE, estimator = estimator, optim.method = "nlminb")
    )[["elapsed"]]
    extra <- if (estimator == "MLR") c("chisq.scaled", "chisq.scaling.factor") else NULL
    fm <- fitMeasures(fits[[name]], c(keys, extra))
    measures[[name]] <- c(as.list(setNames(as.numeric(fm), names(fm))),
                          list(converged = lavInspect(fits[[name]], "converged"),
                               seconds = seconds))
  }
  m1 <- fits$m1; m2 <- fits$m2; m3 <- fits$m3
  out$estimators[[estimator]] <- list(
    measures = measures,
    # the call with two models, then with all three (in a scrambled order: lavaan sorts
    # them by df)
    lrt_m1_m2 = table_of(lavTestLRT(m1, m2)),
    lrt_all = table_of(lavTestLRT(m3, m1, m2)))
}
cat(toJSON(out, auto_unbox = TRUE, digits = 15, pretty = TRUE, na = "null"), "\n")
