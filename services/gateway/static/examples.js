// Specs from examples/ in the repository, as their text, to start from on the submit
// page. tests/services/test_dashboard.py keeps them equal to those files.

export const EXAMPLES = {
  "quick.json": `{
  "name": "quick-digits",
  "dataset": {"builtin": "digits"},
  "search_space": {
    "lr": {"grid": [0.001, 0.003]},
    "batch_size": 64,
    "dropout": 0.2,
    "hidden_units": {"grid": [64, 128]},
    "weight_decay": 0,
    "epochs": 8
  },
  "metric": "val_accuracy",
  "mode": "max"
}
`,
  "seed-grid.json": `{
  "name": "seed-grid",
  "dataset": {"builtin": "digits", "scaler": "minmax", "balance": "weighted_sampler"},
  "search_space": {
    "lr": {"grid": [0.00003, 0.0005, 0.001, 0.0007]},
    "batch_size": {"grid": [8, 16, 32, 64, 128, 256, 512]},
    "dropout": {"grid": [0.3, 0.5, 0.7, 0.85]},
    "hidden_units": {"grid": [30, 50, 100, 200, 300]},
    "weight_decay": {"grid": [0]},
    "epochs": 20
  },
  "metric": "val_accuracy",
  "mode": "max"
}
`,
};
