-- Customer-lifetime predictions (internal/prediction), written by hand:
-- set-based result tables that ent does not model.

-- One row per fit: the BG/NBD parameters (r, alpha, a, b; time in weeks),
-- the Gamma-Gamma parameters (p, q, v; money in fen), how many members the
-- fit saw and the BG/NBD log-likelihood at the optimum.
CREATE TABLE prediction_models (
  id bigserial PRIMARY KEY,
  fitted_at timestamptz NOT NULL,
  members integer NOT NULL,
  r double precision NOT NULL,
  alpha double precision NOT NULL,
  a double precision NOT NULL,
  b double precision NOT NULL,
  p double precision NOT NULL,
  q double precision NOT NULL,
  v double precision NOT NULL,
  log_likelihood double precision NOT NULL
);
CREATE INDEX prediction_models_fitted_at ON prediction_models (fitted_at);

-- The last fit's scores, one row per member with a purchase; every fit
-- replaces all rows in one transaction. predicted_value_12m is in fen.
CREATE TABLE member_predictions (
  member_id bigint PRIMARY KEY,
  probability_alive double precision NOT NULL,
  expected_purchases_90d double precision NOT NULL,
  predicted_value_12m bigint NOT NULL,
  churn_risk double precision NOT NULL,
  fitted_at timestamptz NOT NULL
);
CREATE INDEX member_predictions_churn_risk ON member_predictions (churn_risk);
