# lavaan's RMSEA interval, close-fit p-values and sample-size adjusted BIC for the
# shared cases (the shared references predate them). Run from tests/data/lavaan with
# R_LIBS pointing at a build of lavaan 0.7.2:
#   Rscript ../lavaan_extra/extra_measures.R > ../lavaan_extra/extra_measures.json
suppressPackageStartupMessages({library(lavaan); library(jsonlite)})
keys <- c("chisq", "df", "ntotal", "bic2", "rmsea", "rmsea.ci.lower", "rmsea.ci.upper",
          "rmsea.ci.level", "rmsea.pvalue", "rmsea.close.h0", "rmsea.notclose.pvalue",
          "rmsea.notclose.h0")
out <- list(lavaan_version = as.character(packageVersion("lavaan")), cases = list())
for (f in sort(Sys.glob("*.json"))) {
  ref <- fromJSON(f, simplifyVector = FALSE)
  if (is.null(ref$case)) next
  cs <- ref$case
  d <- read.csv(cs$data)
  args <- c(list(model = cs$model, data = d, cluster = cs$cluster, missing = "ml"), cs$options)
  fit <- do.call(sem, args)
  fm <- fitMeasures(fit, keys)
  out$cases[[sub("\\.json$", "", f)]] <- as.list(setNames(as.numeric(fm), keys))
}
cat(toJSON(out, auto_unbox = TRUE, digits = 15, pretty = TRUE), "\n")
