# lavaan's post-fit tools for the shared two-level cases: residuals(), modindices()
# and lavPredict(). Run from tests/data/lavaan with R_LIBS pointing at a build of
# lavaan 0.7.2:
#   Rscript ../lavaan_extra/postfit.R > ../lavaan_extra/postfit.json
# Predictions are kept for the first rows / clusters only, with column summaries.
suppressPackageStartupMessages({library(lavaan); library(jsonlite)})
n_rows <- 50L
n_clusters <- 20L

level_name <- function(b) c("within", "between")[b]

residual_blocks <- function(res) {
  out <- list()
  for (b in seq_along(res)) {
    r <- res[[b]]
    out[[level_name(b)]] <- list(
      names = I(rownames(r$cov)),
      cov = unname(lapply(seq_len(nrow(r$cov)), function(i) I(as.numeric(r$cov[i, ])))),
      mean = I(as.numeric(r$mean)))
  }
  out
}

# modindices() drops its level column when the rows left are all of one level, so it is
# called with free_remove = FALSE (both levels stay) and the model's free rows are taken
# out here; rows whose mi is NA are dropped, as modindices() does by default
mi_table <- function(fit, information) {
  mi <- modindices(fit, information = information, free_remove = FALSE)
  pt <- parTable(fit)
  free_keys <- with(pt[pt$free > 0, ], paste(lhs, op, rhs, level))
  mi <- mi[!paste(mi$lhs, mi$op, mi$rhs, mi$level) %in% free_keys, ]
  list(lhs = I(mi$lhs), op = I(mi$op), rhs = I(mi$rhs), level = I(as.integer(mi$level)),
       mi = I(mi$mi), epc = I(mi$epc), sepc_all = I(mi$sepc.all))
}

prediction <- function(p, rows) {
  p <- as.matrix(p)
  k <- seq_len(min(length(rows), nrow(p)))
  list(columns = I(as.character(colnames(p))), rows = I(as.integer(rows[k])),
       head = unname(lapply(k, function(i) I(as.numeric(p[i, ])))),
       n = nrow(p), col_mean = I(as.numeric(colMeans(p))),
       col_sd = I(as.numeric(apply(p, 2, sd))))
}

out <- list(lavaan_version = as.character(packageVersion("lavaan")), cases = list())
for (f in sort(Sys.glob("*.json"))) {
  ref <- fromJSON(f, simplifyVector = FALSE)
  if (is.null(ref$case)) next
  cs <- ref$case
  d <- read.csv(cs$data)
  args <- c(list(model = cs$model, data = d, cluster = cs$cluster, missing = "ml"), cs$options)
  fit <- do.call(sem, args)
  lp <- fit@Data@Lp[[1]]
  rows_used <- fit@Data@case.idx[[1]]        # 1-based rows of the csv
  cluster_ids <- lp$cluster.id[[2]]          # one per cluster, lavaan's order
  case <- list(
    conditional_x = fit@Model@conditional.x,
    logl = as.numeric(fitMeasures(fit, "logl")),
    residuals_raw = residual_blocks(residuals(fit, type = "raw")),
    residuals_cor = residual_blocks(residuals(fit, type = "cor")),
    residuals_cor_bentler = residual_blocks(residuals(fit, type = "cor.bentler")),
    modindices = mi_table(fit, "expected"),
    modindices_observed = mi_table(fit, "observed"),
    predict = list())
  for (lev in 1:2) {
    p <- lavPredict(fit, level = lev)
    ids <- if (lev == 1L) rows_used[seq_len(n_rows)] else seq_len(n_clusters)
    pr <- prediction(p, ids)
    if (lev == 2L) pr$cluster_ids <- I(as.character(cluster_ids[seq_len(n_clusters)]))
    case$predict[[paste0("lv_level", lev)]] <- pr
  }
  case$predict$yhat_level1 <- prediction(lavPredict(fit, level = 1L, type = "yhat"),
                                         rows_used[seq_len(n_rows)])
  out$cases[[sub("\\.json$", "", f)]] <- case
}
cat(toJSON(out, auto_unbox = TRUE, digits = 15, pretty = FALSE, na = "null"), "\n")
