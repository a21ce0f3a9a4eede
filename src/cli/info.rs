//! The commands that only print what they read: `list-queries`, `show-params`, `hash-token`,
//! `schema` and `version`.

use bridge::pipeline::spec::pipeline_json_schema;
use bridge::{Error, Result};

use super::{Context, Outcome, print_json};

#[derive(clap::Args)]
pub struct ListQueriesArgs {
    #[arg(long)]
    country: Option<String>,
}

#[derive(clap::Args)]
pub struct ShowParamsArgs {
    #[arg(long)]
    country: String,
}

/// `bridge list-queries`: the SQL files a country (or the project) uses, name and path.
pub fn list_queries(cx: &Context, args: ListQueriesArgs) -> Result<Outcome> {
    let project = &cx.project;
    let country = args.country.map(|c| c.to_lowercase());
    if let Some(c) = &country {
        project.config_params(Some(c))?;
    }
    let queries = project.list_queries(country.as_deref())?;
    if cx.json {
        let list: Vec<_> = queries
            .iter()
            .map(|(name, path)| {
                serde_json::json!({"name": name, "path": project.display_path(path)})
            })
            .collect();
        print_json(&list);
    } else {
        for (name, path) in queries {
            println!("{name}\t{}", project.display_path(&path).display());
        }
    }
    Ok(Outcome::Success)
}

/// `bridge show-params`: the parameters a country's runs see.
pub fn show_params(cx: &Context, args: ShowParamsArgs) -> Result<Outcome> {
    let country = args.country.to_lowercase();
    let mut params = cx.project.config_params(Some(&country))?;
    params.insert("country".into(), country.into());
    if cx.json {
        print_json(&params);
    } else {
        print!(
            "{}",
            serde_yaml::to_string(&params).expect("params serialize")
        );
    }
    Ok(Outcome::Success)
}

/// `bridge hash-token`: the SHA-256 of the token read from stdin.
pub fn hash_token() -> Result<Outcome> {
    let mut token = String::new();
    std::io::stdin()
        .read_line(&mut token)
        .map_err(|e| Error::io("<stdin>", e))?;
    let token = token.trim_end_matches(['\r', '\n']);
    if token.is_empty() {
        return Err(Error::Invalid(
            "hash-token: give the token on stdin, e.g. `printf %s \"$TOKEN\" | bridge hash-token`"
                .into(),
        ));
    }
    println!("{}", bridge::auth::hash_token(token));
    Ok(Outcome::Success)
}

/// `bridge schema`: the JSON Schema of pipeline files.
pub fn schema() -> Result<Outcome> {
    print!("{}", pipeline_json_schema());
    Ok(Outcome::Success)
}

/// `bridge version`.
pub fn version() -> Result<Outcome> {
    println!("bridge {}", env!("CARGO_PKG_VERSION"));
    Ok(Outcome::Success)
}
