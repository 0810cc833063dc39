# lavaan's standardized solution (std.all, std.lv, std.nox, each with delta-method
# standard errors) and R-square per level for the shared cases. Run from
# tests/data/lavaan with R_LIBS pointing at a build of lavaan 0.7.2:
#   Rscript ../lavaan_extra/standardized.R > ../lavaan_extra/standardized.json
suppressPackageStartupMessages({library(lavaan); library(jsonlite)})
solution <- function(fit, type) {
  s <- suppressWarnings(standardizedSolution(fit, type = type))
  list(est_std = s$est.std, se = s$se, z = s$z, pvalue = s$pvalue,
       ci_lower = s$ci.lower, ci_upper = s$ci.upper)
}
out <- list(lavaan_version = as.character(packageVersion("lavaan")), cases = list())
for (f in sort(Sys.glob("*.json"))) {
  ref <- fromJSON(f, simplifyVector = FALSE)
  if (is.null(ref$case)) next
  cs <- ref$case
  d <- read.csv(cs$data)
  args <- c(list(model = cs$model, data = d, cluster = cs$cluster, missing = "ml"), cs$options)
  fit <- do.call(sem, args)
  pt <- parTable(fit)
  r2 <- lavInspect(fit, "r2")
  out$cases[[sub("\\.json$", "", f)]] <- list(
    rows = list(lhs = pt$lhs, op = pt$op, rhs = pt$rhs, level = pt$block, exo = pt$exo,
                est = pt$est),
    std_all = solution(fit, "std.all"),
    std_lv = solution(fit, "std.lv"),
    std_nox = solution(fit, "std.nox"),
    r2 = lapply(r2, function(v) as.list(v)))
}
cat(toJSON(out, auto_unbox = TRUE, digits = 15, pretty = TRUE, na = "null"), "\n")
