"""A user's suite run with `pytest --emulator-docker` gets the Compose deployment, for real."""

import pytest

pytest_plugins = ["pytester"]
pytestmark = pytest.mark.docker


def test_emulator_docker_option_runs_user_tests_against_compose(pytester, emulator_image):
    pytester.makepyfile("""
        import mlflow
        from mlflow import MlflowClient

        def test_user_code(azureml_workspace, databricks_workspace, emulated_workspaces):
            assert emulated_workspaces.__class__.__name__ == "DockerWorkspaces"
            client = MlflowClient(tracking_uri=azureml_workspace.tracking_uri)
            run = client.create_run(client.create_experiment("from-a-user-suite"))
            client.log_metric(run.info.run_id, "epoch_loss", 0.5)
            assert client.get_run(run.info.run_id).data.metrics == {"epoch_loss": 0.5}
    """)
    result = pytester.runpytest_subprocess("--emulator-docker", "-p", "no:cacheprovider", timeout=600)
    result.assert_outcomes(passed=1)
