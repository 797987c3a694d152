"""The pytest plugin's --emulator-docker option routes the fixtures to a Compose deployment."""

pytest_plugins = ["pytester"]

CONFTEST = '''
import types, pytest
from harness.workspaces import AzureMLWorkspace, DatabricksWorkspace

@pytest.fixture(scope="session")
def docker_workspaces():
    return types.SimpleNamespace(
        databricks=DatabricksWorkspace("http://db.invalid:5001", "dapi-x", "u@example.com"),
        azureml=AzureMLWorkspace("http://aml.invalid:5002", "aml-x", "sub", "rg", "ws",
                                 "http://aml.invalid:5002/mlflow/v2.0/x"),
    )
'''


def test_emulator_docker_uses_the_docker_workspaces_fixture(pytester):
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile("""
        import os
        def test_x(databricks_workspace, azureml_workspace):
            assert databricks_workspace.url == "http://db.invalid:5001"
            assert os.environ["DATABRICKS_TOKEN"] == "dapi-x"
            assert os.environ["MLFLOW_TRACKING_TOKEN"] == "aml-x"
    """)
    pytester.runpytest("--emulator-docker", "-p", "no:cacheprovider").assert_outcomes(passed=1)
