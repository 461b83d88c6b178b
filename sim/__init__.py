"""The world and the experiment: mock web, learner, scenarios, runner and the CLI."""
