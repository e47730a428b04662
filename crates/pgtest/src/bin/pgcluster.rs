//! Starts a PostgreSQL primary with synchronous standbys in temporary
//! directories, prints its connection string, and keeps them running until
//! stdin closes (Ctrl-D, or the end of a pipe). For measuring fundtrail on
//! a replicated journal by hand:
//!
//! ```sh
//! cargo run -p fundtrail-pgtest --bin pgcluster -- 1
//! ```
//!
//! The argument is the number of standbys (0 to 4); commits wait for any one.

use std::io::Read;

use fundtrail_pgtest::Cluster;

const NAMES: [&str; 4] = ["standby_a", "standby_b", "standby_c", "standby_d"];

fn main() {
    let count: usize = match std::env::args().nth(1).map(|arg| arg.parse()) {
        None => 1,
        Some(Ok(n)) if n <= NAMES.len() => n,
        Some(_) => {
            eprintln!("usage: pgcluster [STANDBYS], 0 to {}", NAMES.len());
            std::process::exit(2);
        }
    };
    let primary = if count == 0 {
        Cluster::start()
    } else {
        Cluster::start_primary(&NAMES[..count])
    };
    let standbys: Vec<Cluster> = NAMES[..count]
        .iter()
        .map(|name| Cluster::start_standby(&primary, name))
        .collect();
    println!("{}", primary.url("postgres"));
    for (name, standby) in NAMES.iter().zip(&standbys) {
        eprintln!("standby {name} on port {}", standby.port);
    }
    eprintln!("running until stdin closes");
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
}
