//! `hearth bench` as a user runs it, on SmolLM2: one JSON object per workload with llama-bench's fields, positive
//! speeds from the requested number of repetitions, and clear errors for nonsense.

mod common;

use common::hearth;

#[test]
fn json_rows_per_workload() {
    let (ok, stdout, stderr) = hearth(&[
        "bench",
        "-m",
        "smollm2-135m-instruct",
        "-p",
        "32",
        "-n",
        "4",
        "-d",
        "8",
        "-r",
        "2",
        "--json",
    ]);
    assert!(ok, "{stderr}");
    let rows: Vec<serde_json::Value> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rows.len(), 2, "{stdout}");
    assert_eq!(rows[0]["test"], "pp32 @ d8");
    assert_eq!(rows[1]["test"], "tg4 @ d8");
    for (row, (p, n)) in rows.iter().zip([(32, 0), (0, 4)]) {
        assert_eq!(row["n_prompt"], p);
        assert_eq!(row["n_gen"], n);
        assert_eq!(row["n_depth"], 8);
        assert_eq!(row["samples_ts"].as_array().unwrap().len(), 2);
        assert!(row["avg_ts"].as_f64().unwrap() > 0.0);
    }
    let fraction = rows[1]["bandwidth_fraction"].as_f64().unwrap();
    assert!(fraction > 0.0 && fraction < 2.0, "{fraction}");
    assert!(rows[0]["bandwidth_fraction"].is_null());
}

#[test]
fn the_table_and_errors() {
    let (ok, stdout, stderr) = hearth(&["bench", "-m", "smollm2-135m-instruct", "-p", "16", "-n", "0", "-r", "1"]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("| pp16 |"), "{stdout}");
    let (ok, _, stderr) = hearth(&["bench", "-m", "smollm2-135m-instruct", "-p", "0", "-n", "0"]);
    assert!(!ok && stderr.contains("nothing to run"), "{stderr}");
    let (ok, _, stderr) = hearth(&["bench", "-m", "smollm2-135m-instruct", "-r", "0"]);
    assert!(!ok && stderr.contains("at least 1"), "{stderr}");
}
