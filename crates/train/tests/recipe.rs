use std::fs;

#[test]
fn recipe_file_errors_name_the_path_as_given() {
    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct R {
        lr: f64,
    }
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("recipe.toml");
    fs::write(&p, "lrr = 1\n").unwrap();
    let err = radit_train::recipe::load_recipe::<R>(&p, &[]).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("unknown key `lrr` in {} (did you mean `lr`?)", p.display())
    );
}
