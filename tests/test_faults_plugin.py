"""The pytest plugin's fault helpers: rules never outlive their test, the journal fixture records."""

pytest_plugins = ["pytester"]


def test_plugin_fault_fixtures_do_not_leak(pytester):
    pytester.makepyfile("""
        import pytest
        from mlflow import MlflowClient
        from mlflow.exceptions import MlflowException
        from harness.faults import inject_fault as inject_fault_cm

        def test_a_adds_rules(databricks_workspace, azureml_workspace, inject_fault):
            inject_fault(databricks_workspace, "GET", "*/registered-models/search", status=503)
            databricks_workspace.add_fault("GET", "*/anything", status=500)
            azureml_workspace.add_fault("GET", "*/anything", status=500)
            assert len(databricks_workspace.faults()) == 2

        def test_b_sees_none(databricks_workspace, azureml_workspace):
            assert databricks_workspace.faults() == [] and azureml_workspace.faults() == []

        def test_c_context_manager_and_journal(databricks_workspace, request_journal):
            client = MlflowClient("databricks", "databricks")
            # A fresh workspace's first registry call can 500 while MLflow creates its tables (seen in
            # this journal; not a fault rule); the client retries it. Warm the store up first.
            client.search_registered_models()
            with pytest.raises(RuntimeError):
                with inject_fault_cm(databricks_workspace, "POST", "*/registered-models/create", status=403):
                    with pytest.raises(MlflowException, match="PERMISSION_DENIED"):
                        client.create_registered_model("plugin-model")
                    raise RuntimeError("the block fails: the rule is still removed")
            assert databricks_workspace.faults() == []
            client.create_registered_model("plugin-model")
            calls = databricks_workspace.requests(path="/registered-models/create")
            assert [c["status"] for c in calls] == [403, 200]

        # docs/pages/reproducing-bugs.md, "Reproduce a duplicate model version in 10 lines", verbatim:
        def test_lost_create_answer_duplicates_the_version(azureml_workspace, inject_fault):
            client = MlflowClient(azureml_workspace.tracking_uri, azureml_workspace.tracking_uri)
            run = client.create_run(client.create_experiment("dup"))
            client.create_registered_model("m")
            rule = inject_fault(azureml_workspace, "POST", "*/model-versions/create", after_commit="status", times=1)
            mv = client.create_model_version("m", f"{run.info.artifact_uri}/model", run_id=run.info.run_id)
            assert rule.hits == 1 and mv.version == "2"  # one call; the server committed version 1, its answer was lost
            assert sorted(v.version for v in client.search_model_versions("name = 'm'")) == ["1", "2"]

        def test_d_nested_body_fields_and_a_shape(azureml_workspace, inject_fault):
            from harness.faults import prefix

            client = MlflowClient(azureml_workspace.tracking_uri)
            exp = client.create_experiment("nested")
            rule = inject_fault(azureml_workspace, "POST", "*/runs/create", body={"tags[].key": prefix("repro.")},
                                status=403, shape="databricks", message="denied by the bug report")
            with pytest.raises(MlflowException, match="denied by the bug report") as err:
                client.create_run(exp, tags={"repro.case": "7"})
            assert err.value.error_code == "PERMISSION_DENIED"
            client.create_run(exp, tags={"other": "repro."})
            assert (rule.matched, rule.hits) == (1, 1)

        def test_e_and_that_rule_is_gone_too(azureml_workspace):
            assert azureml_workspace.faults() == []
    """)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q")
    result.assert_outcomes(passed=6)
