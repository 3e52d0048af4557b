//! The lab: servers with a scrubbed environment, a directory name with a space and a newline,
//! `lab up; lab down; lab up` in one directory, and an environment password that is for the
//! real deployment, not for the password-less lab.

use crate::common::*;

fn environ(pid: u64) -> String {
    String::from_utf8_lossy(&std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default()).into_owned()
}

#[test]
fn lab_servers_get_no_secrets_and_odd_directories_work_twice() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("lab with space\nand newline");
    let dir_arg = dir.to_str().unwrap();
    let secrets = [
        ("FAILPROBE_PASSWORD", "lab-secret-1".to_string()),
        ("REDISCLI_AUTH", "lab-secret-2".to_string()),
        ("AWS_SECRET_ACCESS_KEY", "lab-secret-3".to_string()),
    ];
    // The second round adds the endpoint, a failprobe process of the lab's own.
    for (round, topology) in ["sentinel", "endpoint"].into_iter().enumerate() {
        let o = failprobe_env(&["lab", "up", "--topology", topology, "--dir", dir_arg], &secrets);
        assert_eq!(code(&o), 0, "round {round}: {}", explain(&o));
        let lab: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("lab.json")).unwrap()).unwrap();
        for node in lab["nodes"].as_array().unwrap() {
            let env = environ(node["pid"].as_u64().unwrap());
            assert!(!env.is_empty(), "round {round}: {node}");
            assert!(!env.contains("lab-secret"), "round {round}: a lab server inherited a secret: {node}");
        }
        let status = failprobe(&["lab", "status", "--dir", dir_arg]);
        assert_eq!(code(&status), 0, "round {round}: {}", explain(&status));
        if round == 0 {
            // The environment's password is for a real target; the lab has none and must still work.
            let out = tmp.path().join("run");
            let args = ["run", "--lab", dir_arg, "--trigger", "none", "--duration", "1s", "--quiet", "--out"];
            let o = failprobe_env(&[&args[..], &[out.to_str().unwrap()]].concat(), &secrets);
            assert_eq!(code(&o), 0, "{}", explain(&o));
        }
        let o = failprobe(&["lab", "down", "--dir", dir_arg]);
        assert_eq!(code(&o), 0, "round {round}: {}", explain(&o));
        let kinds: Vec<&str> = lab["nodes"].as_array().unwrap().iter().map(|n| n["kind"].as_str().unwrap()).collect();
        assert_eq!(kinds.contains(&"endpoint"), topology == "endpoint", "{kinds:?}");
        for node in lab["nodes"].as_array().unwrap() {
            let pid = node["pid"].as_u64().unwrap();
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let state = stat.rsplit_once(')').and_then(|(_, r)| r.split_whitespace().next()).unwrap_or("gone");
            assert!(matches!(state, "gone" | "Z"), "round {round}: {node} still runs after lab down");
        }
    }
}
