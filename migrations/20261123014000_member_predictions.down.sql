DROP TABLE IF EXISTS member_predictions;
DROP TABLE IF EXISTS prediction_models;
