# lavaan 0.7.2's handling of parameter constraints in a two-level model, on
# demo_twolevel_missing (missing = "ml", fixed.x = FALSE, optim.method = "nlminb",
# estimator = "ML"). A labelled base model plus, per case:
#   linear         l2 == m2 and b1 == 2*b2 - b3 (linear equalities)
#   nonlinear      l3 == l2^2 (a nonlinear equality)
#   ineq_active    g1 < 0.1 (the unconstrained g1 is 0.178, so the bound binds)
#   ineq_inactive  b1 > 0.4 (the unconstrained b1 is 0.540, se 0.025, so it does not)
#   ineq_active_general, ineq_inactive_general  the same two bounds written 0.1 > g1 and
#                  0.4 < b1, which lavaan keeps as general inequality constraints rather
#                  than turning them into simple bounds
#   defined        no constraint, ind := b1*l2 and ratio := m2/l2
#   unconstrained  the base model alone
# Per case: logl, npar, df, chisq, converged, iterations, the optimizer lavaan used, the
# wall time of the fit, the simple bounds of the parameter table, parameterEstimates()
# (remove.eq = FALSE, remove.ineq = FALSE: with the ==, <, > and := rows), and any
# warnings or error; lavTestScore() for linear and nonlinear, and
# lavTestWald(constraints = "l2 == m2") for unconstrained. Run with R_LIBS pointing at a
# build of lavaan 0.7.2 (from any folder; it finds ../lavaan/ from its own location):
#   Rscript tests/data/lavaan_extra/constraints.R
# It writes constraints.json next to itself (infinite bounds are written as null).
suppressPackageStartupMessages({library(lavaan); library(jsonlite)})

script_arg <- grep("^--file=", commandArgs(trailingOnly = FALSE), value = TRUE)
here <- if (length(script_arg)) {
  dirname(normalizePath(sub("^--file=", "", script_arg[1])))
} else getwd()
data_file <- file.path(here, "..", "lavaan", "demo_twolevel_missing.csv")
out_file <- file.path(here, "constraints.json")

base <- "
level: 1
  fw =~ y1 + l2*y2 + l3*y3
  fw ~ b1*x1 + b2*x2 + b3*x3
level: 2
  fb =~ y1 + m2*y2 + m3*y3
  fb ~ g1*w1 + g2*w2
"
extra <- list(
  linear = c("l2 == m2", "b1 == 2*b2 - b3"),
  nonlinear = c("l3 == l2^2"),
  ineq_active = c("g1 < 0.1"),
  ineq_inactive = c("b1 > 0.4"),
  # the same bounds written with the constant on the left: lavaan's parser turns
  # "label < number" / "label > number" into a simple bound (the lower / upper column of
  # the parameter table, no "<" / ">" row, optimizer nlminb with bounds), but keeps these
  # as general inequality constraints (a "<" / ">" row, optimizer nlminb.constr)
  ineq_active_general = c("0.1 > g1"),
  ineq_inactive_general = c("0.4 < b1"),
  defined = c("ind := b1*l2", "ratio := m2/l2"),
  unconstrained = character(0))
models <- lapply(extra, function(lines)
  paste0(base, if (length(lines)) paste0("  ", lines, "\n", collapse = "") else ""))

d <- read.csv(data_file)
pe_cols <- c("lhs", "op", "rhs", "level", "label", "est", "se", "z", "pvalue",
             "ci.lower", "ci.upper")
columns_of <- function(df) {
  df <- as.data.frame(df)
  # every column an array, even with one row
  out <- lapply(df, function(v) I(if (is.factor(v)) as.character(v) else as.vector(v)))
  names(out) <- names(df)
  out
}
# run expr, keeping its warnings (printed as they come and returned) and its error
capture <- function(expr) {
  warns <- character(0)
  value <- tryCatch(
    withCallingHandlers(expr, warning = function(w) {
      warns <<- c(warns, conditionMessage(w))
      message("  warning: ", conditionMessage(w))
      invokeRestart("muffleWarning")
    }),
    error = function(e) {
      message("  error: ", conditionMessage(e))
      structure(list(message = conditionMessage(e)), class = "captured_error")
    })
  list(value = value, warnings = warns,
       error = if (inherits(value, "captured_error")) value$message else NULL)
}
# the optimizer lav_model_estimate() picks (it turns "nlminb" into "nlminb.constr" when
# there are nonlinear equalities or non-simple inequalities)
optimizer_of <- function(m) {
  if (length(m@ceq.nonlinear.idx) == 0L &&
      (m@cin.simple.only || (length(m@cin.linear.idx) == 0L &&
                             length(m@cin.nonlinear.idx) == 0L))) "nlminb"
  else "nlminb.constr"
}

t_start <- Sys.time()
cases <- list()
for (name in names(models)) {
  message(name, ":")
  res <- list(model = models[[name]], constraints = I(extra[[name]]))
  fit <- NULL
  seconds <- system.time(
    run <- capture(sem(models[[name]], data = d, cluster = "cluster", missing = "ml",
                       fixed.x = FALSE, optim.method = "nlminb", estimator = "ML"))
  )[["elapsed"]]
  res$seconds <- seconds
  res$warnings <- I(run$warnings)
  res["error"] <- list(run$error)
  if (is.null(run$error)) {
    fit <- run$value
    post <- capture({
      fm <- fitMeasures(fit, c("npar", "logl", "df", "chisq"))
      m <- fit@Model
      opt <- lavInspect(fit, "optim")
      pe <- parameterEstimates(fit, remove.eq = FALSE, remove.ineq = FALSE)
      pt <- parTable(fit)
      has_bound <- (if (is.null(pt$lower)) FALSE else is.finite(pt$lower)) |
                   (if (is.null(pt$upper)) FALSE else is.finite(pt$upper))
      bnd <- pt[has_bound & pt$free > 0L, , drop = FALSE]
      list(
        logl = unname(fm[["logl"]]), npar = unname(fm[["npar"]]),
        df = unname(fm[["df"]]), chisq = unname(fm[["chisq"]]),
        converged = lavInspect(fit, "converged"),
        iterations = if (!is.null(opt$iterations)) opt$iterations else NULL,
        n_free = length(coef(fit)),
        optimizer = optimizer_of(m),
        constraint_flags = list(
          eq_constraints_reparam = m@eq.constraints, ceq_simple_only = m@ceq.simple.only,
          cin_simple_only = m@cin.simple.only,
          n_ceq_linear = length(m@ceq.linear.idx),
          n_ceq_nonlinear = length(m@ceq.nonlinear.idx),
          n_cin_linear = length(m@cin.linear.idx),
          n_cin_nonlinear = length(m@cin.nonlinear.idx)),
        # free parameters with a finite lower / upper bound in lavaan's parameter table
        bounds = columns_of(data.frame(
          lhs = bnd$lhs, op = bnd$op, rhs = bnd$rhs, label = bnd$label,
          lower = if (is.null(bnd$lower)) rep(-Inf, nrow(bnd)) else bnd$lower,
          upper = if (is.null(bnd$upper)) rep(Inf, nrow(bnd)) else bnd$upper,
          stringsAsFactors = FALSE)),
        estimates = columns_of(pe[, intersect(pe_cols, names(pe))]))
    })
    res$postfit_warnings <- I(post$warnings)
    if (!is.null(post$error)) res$postfit_error <- post$error else res <- c(res, post$value)
    if (name %in% c("linear", "nonlinear")) {
      sc <- capture(lavTestScore(fit))
      res$score_test <- if (is.null(sc$error))
        list(test = columns_of(sc$value$test), uni = columns_of(sc$value$uni),
             warnings = I(sc$warnings))
      else list(error = sc$error, warnings = I(sc$warnings))
    }
    if (name == "unconstrained") {
      wt <- capture(lavTestWald(fit, constraints = "l2 == m2"))
      res$wald_test <- if (is.null(wt$error))
        c(list(constraints = "l2 == m2"), lapply(wt$value, as.vector),
          list(warnings = I(wt$warnings)))
      else list(constraints = "l2 == m2", error = wt$error, warnings = I(wt$warnings))
    }
  }
  message(sprintf("  %.1f s", seconds))
  cases[[name]] <- res
}
total <- as.numeric(difftime(Sys.time(), t_start, units = "secs"))

out <- list(lavaan_version = as.character(packageVersion("lavaan")),
            R_version = R.version.string,
            data = "demo_twolevel_missing.csv", cluster = "cluster",
            options = list(missing = "ml", fixed.x = FALSE, optim.method = "nlminb",
                           estimator = "ML"),
            base_model = base, total_seconds = total, cases = cases)
writeLines(toJSON(out, auto_unbox = TRUE, digits = 15, pretty = TRUE, na = "null",
                  null = "null"), out_file)
message("wrote ", out_file, sprintf(" (%.0f s)", total))
