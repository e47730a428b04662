//! `fundtrail serve --demo`: a deterministic national scenario to explore.
//!
//! The central level (财政部) appropriates three programmes; the money goes
//! down to provinces of the 三区三州 deep-poverty areas, their prefectures
//! and counties (real GB/T 2260 codes), and sideways from 福建 to 宁夏西吉县
//! (闽宁协作). Counties consolidate programme money into a pool under an
//! integration plan, allocate it to library projects with performance
//! targets, and pay registered households month by month. Some money stays
//! idle, some is returned, a payment is clawed back, a transfer is reversed,
//! and a few anomalies are planted for the auditor to find. Every record is
//! imported with a past business date, so the ledger has months of history.
//!
//! The orgs' keys are derived from their ids, so every run builds the same
//! ledger; they are written to `<data-dir>/demo-keys/` to post as them.

use fundtrail_core::rules::Rules;
use std::path::Path;
use std::sync::Arc;

use anyhow::{anyhow, bail, Result};
use ed25519_dalek::SigningKey;
use fundtrail_api::pb;
use fundtrail_api::pb::request::Body as B;
use fundtrail_client::Signer;
use fundtrail_core::keyfile::KeyFile;
use fundtrail_server::engine::Engine;
use sha2::{Digest, Sha256};

/// A county: org id, name, GB/T 2260 code, registered households.
struct County {
    org: &'static str,
    name: &'static str,
    code: &'static str,
    households: u32,
}

struct Prefecture {
    org: &'static str,
    name: &'static str,
    code: &'static str,
    counties: &'static [County],
}

struct Province {
    org: &'static str,
    name: &'static str,
    code: &'static str,
    prefectures: &'static [Prefecture],
}

const PROVINCES: &[Province] = &[
    Province {
        org: "sc-czt",
        name: "四川省财政厅",
        code: "510000",
        prefectures: &[Prefecture {
            org: "ls-czj",
            name: "凉山彝族自治州财政局",
            code: "513400",
            counties: &[
                County {
                    org: "zj-czj",
                    name: "昭觉县财政局",
                    code: "513431",
                    households: 1_800,
                },
                County {
                    org: "bt-czj",
                    name: "布拖县财政局",
                    code: "513429",
                    households: 1_100,
                },
                County {
                    org: "mg-czj",
                    name: "美姑县财政局",
                    code: "513436",
                    households: 1_100,
                },
            ],
        }],
    },
    Province {
        org: "yn-czt",
        name: "云南省财政厅",
        code: "530000",
        prefectures: &[Prefecture {
            org: "nj-czj",
            name: "怒江傈僳族自治州财政局",
            code: "533300",
            counties: &[
                County {
                    org: "fg-czj",
                    name: "福贡县财政局",
                    code: "533323",
                    households: 1_000,
                },
                County {
                    org: "lp-czj",
                    name: "兰坪白族普米族自治县财政局",
                    code: "533325",
                    households: 900,
                },
            ],
        }],
    },
    Province {
        org: "gs-czt",
        name: "甘肃省财政厅",
        code: "620000",
        prefectures: &[Prefecture {
            org: "lx-czj",
            name: "临夏回族自治州财政局",
            code: "622900",
            counties: &[
                County {
                    org: "dx-czj",
                    name: "东乡族自治县财政局",
                    code: "622926",
                    households: 1_200,
                },
                County {
                    org: "jss-czj",
                    name: "积石山保安族东乡族撒拉族自治县财政局",
                    code: "622927",
                    households: 900,
                },
            ],
        }],
    },
    Province {
        org: "xj-czt",
        name: "新疆维吾尔自治区财政厅",
        code: "650000",
        prefectures: &[Prefecture {
            org: "ht-czj",
            name: "和田地区财政局",
            code: "653200",
            counties: &[County {
                org: "htx-czj",
                name: "和田县财政局",
                code: "653221",
                households: 1_000,
            }],
        }],
    },
    Province {
        org: "nx-czt",
        name: "宁夏回族自治区财政厅",
        code: "640000",
        prefectures: &[Prefecture {
            org: "gy-czj",
            name: "固原市财政局",
            code: "640400",
            counties: &[County {
                org: "xj-czj",
                name: "西吉县财政局",
                code: "640422",
                households: 1_000,
            }],
        }],
    },
];

/// Central programmes: code, account suffix, name, central amount per county (yuan).
const PROGRAMMES: &[(&str, &str, &str, u64)] = &[
    (
        "2130599",
        "xczx",
        "中央财政衔接推进乡村振兴补助资金",
        30_000_000,
    ),
    ("2130505", "ygdz", "以工代赈资金", 8_000_000),
    ("2130506", "mzfz", "少数民族发展资金", 5_000_000),
];

/// Each programme's rules: code, most per household and per person in a
/// month (yuan), longest idle days, announcement required first.
const PROGRAMME_RULES: &[(&str, u64, u64, u32, bool)] = &[
    ("2130599", 800, 300, 365, true),
    ("2130505", 0, 0, 180, true),
    ("2130506", 0, 0, 365, false),
    // 东西部协作 (闽宁): "80%以上资金用于县及以下基层".
    ("2139900", 0, 0, 365, false),
];

/// Monthly household payments, with the payment dates.
const PAYMENT_MONTHS: &[(&str, &str)] = &[
    ("2025-09", "2025-09-20"),
    ("2025-10", "2025-10-20"),
    ("2025-11", "2025-11-20"),
];

/// A county library project: account suffix, name, category, budget
/// (yuan), performance targets, announced.
type ProjectTemplate = (
    &'static str,
    &'static str,
    &'static str,
    u64,
    &'static [&'static str],
    bool,
);

const PROJECTS: [ProjectTemplate; 4] = [
    (
        "cydh",
        "产业到户奖补",
        "产业发展",
        12_000_000,
        &["带动脱贫户增收不低于1000元/户", "受益脱贫户不少于1000户"],
        true,
    ),
    (
        "nclu",
        "村组道路硬化",
        "基础设施",
        9_000_000,
        &["新建硬化道路15公里", "群众满意度不低于90%"],
        true,
    ),
    (
        "ysgc",
        "农村饮水安全巩固提升",
        "基础设施",
        6_000_000,
        &["受益人口不少于5000人"],
        false,
    ),
    ("jypx", "就业技能培训", "就业扶贫", 2_000_000, &[], true),
];

/// Requests per in-process batch while seeding.
const SEED_BATCH: usize = 1_000;

fn demo_key(org: &str) -> SigningKey {
    let digest = Sha256::digest(format!("fundtrail demo key for {org}").as_bytes());
    SigningKey::from_bytes(&digest.into())
}

/// Whole yuan in fen. Demo amounts are constants far below u64::MAX / 100.
fn fen_of_yuan(amount_yuan: u64) -> u64 {
    amount_yuan
        .checked_mul(100)
        .expect("demo amounts are small constants")
}

/// Collects signed requests and posts them in order, in batches.
struct Seeder {
    engine: Arc<Engine>,
    ledger_id: String,
    pending: Vec<pb::SignedRequest>,
    count: u64,
    next_key: u64,
}

impl Seeder {
    /// Adds a record of the history, imported with its value date.
    fn add(&mut self, signer: &Signer, date: &str, body: B) {
        self.push(signer, date, true, body);
    }

    /// Adds a record of today, not imported.
    fn add_today(&mut self, signer: &Signer, body: B) {
        self.push(signer, "", false, body);
    }

    fn push(&mut self, signer: &Signer, date: &str, imported: bool, body: B) {
        self.next_key += 1;
        let request = pb::Request {
            ledger_id: self.ledger_id.clone(),
            idempotency_key: format!("demo-{}", self.next_key),
            signed_at_ms: fundtrail_client::now_ms(),
            value_date: date.to_string(),
            imported,
            body: Some(body),
        };
        self.pending.push(signer.sign(&request));
    }

    /// Posts everything pending and then `body`, dated `date` and imported;
    /// returns the seq of `body`'s record (a quota the next records name).
    async fn post_now(&mut self, signer: &Signer, date: &str, body: B) -> Result<u64> {
        self.add(signer, date, body);
        self.flush().await?;
        Ok(self.engine.record_count() - 1)
    }

    async fn flush(&mut self) -> Result<()> {
        for chunk in std::mem::take(&mut self.pending).chunks(SEED_BATCH) {
            for (i, result) in self
                .engine
                .submit_all(chunk.to_vec())
                .await
                .into_iter()
                .enumerate()
            {
                if let Err(e) = result {
                    bail!(
                        "demo record {} was refused: {}",
                        self.count + i as u64,
                        e.message
                    );
                }
            }
            self.count += chunk.len() as u64;
        }
        Ok(())
    }
}

fn transfer(from: &str, to: &str, amount_fen: u64, document: &str, purpose: &str) -> B {
    B::Transfer(pb::Transfer {
        from_account_id: from.into(),
        to_account_id: to.into(),
        amount_fen,
        sources: Vec::new(),
        document_no: document.into(),
        purpose: purpose.into(),
        memo: String::new(),
        quota_seq: None,
    })
}

fn open(account_id: &str, kind: pb::AccountKind, name: &str, programme: &str) -> B {
    B::OpenAccount(pb::OpenAccount {
        account_id: account_id.into(),
        kind: kind as i32,
        name: name.into(),
        programme_code: programme.into(),
        household_ref: String::new(),
    })
}

fn register(org: &str, name: &str, role: pb::OrgRole, code: &str, key: &Signer) -> B {
    B::RegisterOrg(pb::RegisterOrg {
        org_id: org.into(),
        name: name.into(),
        role: role as i32,
        division_code: code.into(),
        public_key: key.public_key().to_vec(),
    })
}

/// Seeds the scenario into a freshly created ledger; returns the record count.
/// `scale` multiplies the households (and their payments).
/// The rules the demo's history is loaded under: those before import
/// windows (rules 6), as a ledger migrated from an earlier system was.
pub const HISTORY_RULES: Rules = Rules::V5;
const _: () = assert!(HISTORY_RULES.version() < Rules::CURRENT.version());

pub async fn seed(engine: Arc<Engine>, data_dir: &Path, scale: u32) -> Result<u64> {
    let root = Signer::from_key_file(&data_dir.join("root.key"))?;
    let keys_dir = data_dir.join("demo-keys");
    std::fs::create_dir_all(&keys_dir)?;
    let mut signers = std::collections::BTreeMap::new();
    let mut signer = |org: &str| -> Result<Signer> {
        if let Some(s) = signers.get(org) {
            return Ok(Signer::clone(s));
        }
        let key = demo_key(org);
        let path = keys_dir.join(format!("{org}.key"));
        if !path.exists() {
            fundtrail_store::secret::write_secret_file(
                &path,
                KeyFile::new(org, &key).to_json().as_bytes(),
            )?;
        }
        let s = Signer::new(key);
        signers.insert(org.to_string(), s.clone());
        Ok(s)
    };
    let today = fundtrail_core::dates::day_of_ms(engine.clock().now_ms());
    let mut seeder = Seeder {
        ledger_id: engine.meta().ledger_id.clone(),
        engine,
        pending: Vec::new(),
        count: 0,
        next_key: 0,
    };
    use pb::AccountKind as K;
    use pb::OrgRole as R;

    // Central accounts and appropriations (FY2024 leftovers and FY2025).
    let counties_total: u64 = PROVINCES
        .iter()
        .flat_map(|p| p.prefectures)
        .map(|p| p.counties.len() as u64)
        .sum();
    for (code, suffix, name, per_county) in PROGRAMMES {
        seeder.add(
            &root,
            "2025-01-02",
            open(&format!("mof-{suffix}"), K::Programme, name, code),
        );
        seeder.add(
            &root,
            "2025-03-15",
            B::Appropriation(pb::Appropriation {
                account_id: format!("mof-{suffix}"),
                amount_fen: fen_of_yuan(per_county * counties_total * u64::from(scale)),
                programme_code: (*code).into(),
                fiscal_year: 2025,
                document_no: format!("财农〔2025〕{}号", 10 + code.len()),
                purpose: format!("下达2025年{name}"),
                memo: String::new(),
            }),
        );
    }
    seeder.add(
        &root,
        "2025-01-02",
        open("mof-treasury", K::Treasury, "中央国库", ""),
    );
    seeder.add(
        &root,
        "2024-06-01",
        B::Appropriation(pb::Appropriation {
            account_id: "mof-treasury".into(),
            amount_fen: fen_of_yuan(20_000_000),
            programme_code: "2130599".into(),
            fiscal_year: 2024,
            document_no: "财农〔2024〕55号".into(),
            purpose: "2024年衔接资金结转".into(),
            memo: String::new(),
        }),
    );
    let auditor = signer("cnao")?;
    seeder.add(
        &root,
        "2025-01-02",
        register(
            "cnao",
            "中华人民共和国审计署",
            R::Auditor,
            "000000",
            &auditor,
        ),
    );
    let witness = signer("cnao-witness")?;
    seeder.add(
        &root,
        "2025-01-02",
        register(
            "cnao-witness",
            "审计署日志见证节点",
            R::Witness,
            "000000",
            &witness,
        ),
    );

    // 闽宁协作: 福建 appropriates partner money for 西吉县.
    let fujian = signer("fj-czt")?;
    seeder.add(
        &root,
        "2025-01-03",
        register("fj-czt", "福建省财政厅", R::Finance, "350000", &fujian),
    );
    seeder.add(
        &fujian,
        "2025-01-05",
        open("fj-mnxz", K::Programme, "闽宁协作帮扶资金", "2139900"),
    );
    seeder.add(
        &fujian,
        "2025-04-01",
        B::Appropriation(pb::Appropriation {
            account_id: "fj-mnxz".into(),
            // 2,000,000 of it stays with the province: less than the 80% at
            // county level its rules ask for.
            amount_fen: fen_of_yuan(8_000_000),
            programme_code: "2139900".into(),
            fiscal_year: 2025,
            document_no: "闽财农〔2025〕8号".into(),
            purpose: "闽宁协作对口帮扶西吉县".into(),
            memo: String::new(),
        }),
    );
    seeder.flush().await?;

    for province in PROVINCES {
        let p = signer(province.org)?;
        seeder.add(
            &root,
            "2025-01-03",
            register(province.org, province.name, R::Finance, province.code, &p),
        );
        let p_counties: u64 = province
            .prefectures
            .iter()
            .map(|f| f.counties.len() as u64)
            .sum();
        for (code, suffix, name, per_county) in PROGRAMMES {
            let account = format!("{}-{suffix}", province.org);
            seeder.add(
                &p,
                "2025-01-05",
                open(
                    &account,
                    K::Programme,
                    &format!("{}{name}", province.name),
                    code,
                ),
            );
            seeder.add(
                &root,
                "2025-04-10",
                transfer(
                    &format!("mof-{suffix}"),
                    &account,
                    fen_of_yuan(per_county * p_counties * u64::from(scale)),
                    &format!("财农〔2025〕{}号", 20 + suffix.len()),
                    &format!("下达{}", province.name),
                ),
            );
        }
        for prefecture in province.prefectures {
            let f = signer(prefecture.org)?;
            seeder.add(
                &p,
                "2025-01-06",
                register(
                    prefecture.org,
                    prefecture.name,
                    R::Finance,
                    prefecture.code,
                    &f,
                ),
            );
            for (code, suffix, name, per_county) in PROGRAMMES {
                let account = format!("{}-{suffix}", prefecture.org);
                seeder.add(
                    &f,
                    "2025-01-07",
                    open(
                        &account,
                        K::Programme,
                        &format!("{}{name}", prefecture.name),
                        code,
                    ),
                );
                seeder.add(
                    &p,
                    "2025-05-05",
                    transfer(
                        &format!("{}-{suffix}", province.org),
                        &account,
                        fen_of_yuan(
                            per_county * prefecture.counties.len() as u64 * u64::from(scale),
                        ),
                        &format!("{}财农〔2025〕{}号", &province.name[..3], 30 + suffix.len()),
                        "分配下达",
                    ),
                );
            }
            for county in prefecture.counties {
                seed_county(&mut seeder, &mut signer, &f, prefecture.org, county, scale).await?;
            }
        }
    }

    // 闽宁: 福建 → 西吉县 pool, sideways.
    seeder.add(
        &fujian,
        "2025-05-10",
        transfer(
            "fj-mnxz",
            "xj-czj-pool",
            fen_of_yuan(6_000_000),
            "闽财农〔2025〕12号",
            "闽宁协作资金拨付西吉县",
        ),
    );
    // A transfer booked twice by mistake, reversed.
    let dongxiang = signer("dx-czj")?;
    seeder.add(
        &dongxiang,
        "2025-06-02",
        transfer(
            "dx-czj-xczx",
            "dx-czj-pool",
            fen_of_yuan(500_000),
            "东财农〔2025〕33号",
            "重复划转",
        ),
    );
    seeder.flush().await?;
    let duplicated = seeder.engine.record_count() - 1;
    seeder.add(
        &dongxiang,
        "2025-06-03",
        B::Reversal(pb::Reversal {
            target_seq: duplicated,
            document_no: "东财〔2025〕2号".into(),
            reason: "重复下达，冲销".into(),
        }),
    );
    // Idle money recovered: 布拖县 returns part of its unspent 以工代赈 money.
    seeder.add(
        &signer("bt-czj")?,
        "2026-03-01",
        B::Return(pb::Return {
            from_account_id: "bt-czj-ygdz".into(),
            to_account_id: "ls-czj-ygdz".into(),
            amount_fen: fen_of_yuan(2_000_000),
            sources: Vec::new(),
            kind: pb::ReturnKind::IdleRecovery as i32,
            document_no: "布财〔2026〕5号".into(),
            reason: "闲置超过一年，收回统筹使用".into(),
            ..Default::default()
        }),
    );
    // 2024 money carried over to 四川 and left idle for over two years.
    seeder.add(
        &root,
        "2024-07-01",
        transfer(
            "mof-treasury",
            "sc-czt-xczx",
            fen_of_yuan(5_000_000),
            "财农〔2024〕60号",
            "2024年结转资金",
        ),
    );
    // The programmes' rules (资金管理办法), in force from 2025 on (posted
    // last, so that the records before keep their numbers): the compliance
    // report judges the ledger by them.
    for &(code, household_max, person_max, idle_days_max, announcement_required) in PROGRAMME_RULES
    {
        seeder.add(
            &root,
            "2025-01-01",
            B::SetProgrammeRules(pb::SetProgrammeRules {
                programme_code: code.into(),
                document_no: format!("财农〔2025〕{}号", 1 + code.len()),
                household_max_fen: fen_of_yuan(household_max),
                person_max_fen: fen_of_yuan(person_max),
                county_share_min_percent: 80,
                idle_days_max,
                announcement_required,
                quota_issue_days_max: 0,
                cash_follow_days_max: 0,
                monitored_only: false,
            }),
        );
    }
    // The history is loaded: the ledger moves on to the current rules, under
    // which nothing more can be imported without a declared window.
    seeder.add_today(
        &root,
        B::UpgradeRules(pb::UpgradeRules {
            rules_version: Rules::CURRENT.version(),
            document_no: "财办〔2026〕9号".into(),
        }),
    );
    // Under them, money sent sideways needs a pairing (闽宁协作 was one
    // before it had to be declared), and 昭觉县 still migrating its records
    // needs an open import window.
    seeder.add_today(
        &root,
        B::DeclarePairing(pb::DeclarePairing {
            from_org_id: "fj-czt".into(),
            to_org_id: "nx-czt".into(),
            document_no: "国开办发〔2026〕3号".into(),
        }),
    );
    seed_quota_2026(&mut seeder, &mut signer, &root, today, scale).await?;
    seeder.add_today(
        &root,
        B::DeclareImportWindow(pb::DeclareImportWindow {
            org_id: "zj-czj".into(),
            until_date: fundtrail_core::dates::format_date(today + 30),
            document_no: "财办〔2026〕10号".into(),
        }),
    );
    seeder.flush().await?;
    Ok(seeder.count)
}

async fn seed_county(
    seeder: &mut Seeder,
    signer: &mut impl FnMut(&str) -> Result<Signer>,
    prefecture_key: &Signer,
    prefecture_org: &str,
    county: &County,
    scale: u32,
) -> Result<()> {
    use pb::AccountKind as K;
    let c = signer(county.org)?;
    seeder.add(
        prefecture_key,
        "2025-01-08",
        register(
            county.org,
            county.name,
            pb::OrgRole::Finance,
            county.code,
            &c,
        ),
    );
    let short = county.name.trim_end_matches("财政局");
    let pool = format!("{}-pool", county.org);
    seeder.add(
        &c,
        "2025-01-09",
        open(&pool, K::Pool, &format!("{short}统筹整合涉农资金"), ""),
    );
    for (code, suffix, name, per_county) in PROGRAMMES {
        let account = format!("{}-{suffix}", county.org);
        seeder.add(
            &c,
            "2025-01-09",
            open(&account, K::Programme, &format!("{short}{name}"), code),
        );
        seeder.add(
            prefecture_key,
            "2025-05-20",
            transfer(
                &format!("{prefecture_org}-{suffix}"),
                &account,
                fen_of_yuan(per_county * u64::from(scale)),
                &format!("州财农〔2025〕{}号", 40 + suffix.len()),
                "下达到县",
            ),
        );
    }
    // Consolidation into the pool; 布拖县 leaves its 以工代赈 money idle.
    for (_, suffix, _, per_county) in PROGRAMMES {
        if county.org == "bt-czj" && *suffix == "ygdz" {
            continue;
        }
        let keep = if *suffix == "xczx" {
            per_county / 10
        } else {
            0
        };
        seeder.add(
            &c,
            "2025-06-01",
            B::Consolidation(pb::Consolidation {
                from_account_id: format!("{}-{suffix}", county.org),
                pool_account_id: pool.clone(),
                amount_fen: fen_of_yuan((per_county - keep) * u64::from(scale)),
                sources: Vec::new(),
                plan_document_no: format!("{short}涉农资金统筹整合方案〔2025〕1号"),
                memo: String::new(),
            }),
        );
    }
    // The project library.
    for (suffix, name, category, budget, targets, announce) in PROJECTS {
        let account = format!("{}-{suffix}", county.org);
        seeder.add(
            &c,
            "2025-06-05",
            B::RegisterProject(pb::RegisterProject {
                account_id: account.clone(),
                name: format!("{short}{name}项目"),
                category: category.into(),
                location_code: county.code.into(),
                budget_fen: fen_of_yuan(budget * u64::from(scale)),
                performance_targets: targets.iter().map(|t| t.to_string()).collect(),
                responsible_unit: format!("{short}乡村振兴局"),
                fiscal_year: 2025,
            }),
        );
        if announce {
            seeder.add(
                &c,
                "2025-06-10",
                B::AnnounceProject(pb::AnnounceProject {
                    account_id: account.clone(),
                    document_no: format!("{short}公示〔2025〕{}号", suffix.len()),
                    memo: "县乡村三级公告公示".into(),
                }),
            );
        }
        // The training project has no performance target: it gets no money.
        if !targets.is_empty() {
            let amount = (if suffix == "cydh" { budget } else { budget / 2 }) * u64::from(scale);
            seeder.add(
                &c,
                "2025-06-15",
                B::Allocation(pb::Allocation {
                    quota_seq: None,
                    pool_account_id: pool.clone(),
                    project_account_id: account,
                    amount_fen: fen_of_yuan(amount),
                    sources: Vec::new(),
                    document_no: format!("{short}财整〔2025〕{}号", 3 + suffix.len()),
                    memo: String::new(),
                }),
            );
        }
    }
    seeder.flush().await?;
    // Households: registry ids only, with village codes inside the county.
    let households = county.households * scale;
    for h in 0..households {
        let village = format!("{}{:03}{:03}", county.code, 100 + h % 12, 200 + h % 30);
        // One household carries a village code of another county: an anomaly.
        let village = if h == 7 && county.org == "zj-czj" {
            format!("513429{}", &village[6..])
        } else {
            village
        };
        seeder.add(
            &c,
            "2025-08-01",
            B::RegisterHousehold(pb::RegisterHousehold {
                account_id: format!("{}-hh-{:06}", county.code, h + 1),
                household_ref: format!("JDLK-{}-{:06}", county.code, h + 1),
                village_code: village,
                basis: if h % 3 == 0 {
                    pb::SubsidyBasis::PerPerson
                } else {
                    pb::SubsidyBasis::PerHousehold
                } as i32,
                members: 1 + h % 6,
            }),
        );
    }
    seeder.flush().await?;
    // Monthly 产业到户奖补 payments from the project account, tied to each
    // household's production: they differ within a village (households
    // h, h + 60, h + 120, … share one). Planted: one village of 美姑县 paid
    // the same to every household for October (平均主义, EQUAL_SPLIT).
    let project = format!("{}-cydh", county.org);
    for (period, date) in PAYMENT_MONTHS {
        for h in 0..households {
            let step = u64::from(h / 60);
            let amount = if county.org == "mg-czj" && *period == "2025-10" && h % 60 == 1 {
                800
            } else if h % 3 == 0 {
                300 * u64::from(1 + h % 6) - 20 * (step % 4)
            } else {
                800 - 50 * (step % 5)
            };
            seeder.add(
                &c,
                date,
                B::Disbursement(pb::Disbursement {
                    from_account_id: project.clone(),
                    household_account_id: format!("{}-hh-{:06}", county.code, h + 1),
                    amount_fen: fen_of_yuan(amount),
                    sources: Vec::new(),
                    programme_code: "2130599".into(),
                    period: (*period).into(),
                    document_no: format!("{short}奖补〔2025〕{}号", &period[5..]),
                    memo: String::new(),
                    quota_seq: None,
                }),
            );
        }
        seeder.flush().await?;
    }
    // Planted anomalies: a duplicate payment, and a household found
    // ineligible from September on, after it had been paid.
    if county.org == "dx-czj" {
        let hh = format!("{}-hh-000003", county.code);
        seeder.add(
            &c,
            "2025-11-21",
            B::Disbursement(pb::Disbursement {
                from_account_id: project.clone(),
                household_account_id: hh,
                amount_fen: fen_of_yuan(800),
                sources: Vec::new(),
                programme_code: "2130599".into(),
                period: "2025-11".into(),
                document_no: format!("{short}奖补〔2025〕11号"),
                memo: "重复发放".into(),
                quota_seq: None,
            }),
        );
        let hh = format!("{}-hh-000005", county.code);
        seeder.add(
            &c,
            "2025-09-01",
            B::SetHouseholdStatus(pb::SetHouseholdStatus {
                account_id: hh.clone(),
                status: pb::HouseholdStatus::Ineligible as i32,
                document_no: format!("{short}核查〔2025〕9号"),
                reason: "动态监测核查：不符合认定条件".into(),
            }),
        );
        // The wrongly paid money is clawed back (追回虚报冒领).
        seeder.add(
            &c,
            "2025-12-05",
            B::Return(pb::Return {
                from_account_id: hh,
                to_account_id: format!("{}-xczx", county.org),
                amount_fen: fen_of_yuan(800),
                sources: Vec::new(),
                kind: pb::ReturnKind::Clawback as i32,
                document_no: format!("{short}追缴〔2025〕1号"),
                reason: "追回不符合条件发放的奖补资金".into(),
                ..Default::default()
            }),
        );
        // Performance evaluations (绩效评价): the roads project fails, and
        // money is allocated to it all the same; the industry project passes.
        let evaluate = |project: &str, score: u32, targets_met: Vec<bool>| {
            B::EvaluateProject(pb::EvaluateProject {
                account_id: format!("{}-{project}", county.org),
                document_no: format!("{short}绩评〔2025〕{}号", project.len()),
                score,
                targets_met,
            })
        };
        seeder.add(&c, "2025-12-01", evaluate("nclu", 52, vec![false, true]));
        seeder.add(&c, "2025-12-01", evaluate("cydh", 91, vec![true, true]));
        seeder.add(
            &c,
            "2025-12-10",
            B::Allocation(pb::Allocation {
                quota_seq: None,
                pool_account_id: format!("{}-pool", county.org),
                project_account_id: format!("{}-nclu", county.org),
                amount_fen: fen_of_yuan(1_000_000),
                sources: Vec::new(),
                document_no: format!("{short}财整〔2025〕20号"),
                memo: "评价为差后继续安排".into(),
            }),
        );
        seeder.flush().await?;
    }
    Ok(())
}

/// FY2026 衔接资金 as 直达资金 (rules 9), migrated from the 直达资金 system:
/// its 2130599 rules gain deadlines (quota passed on within 30 days above
/// county level, cash following quota within 30 days); the centre
/// appropriates and issues quota for each county's households, split down
/// province → prefecture → county with the cash following it; counties pay
/// households in June against their quota. Planted: 四川 passes its quota
/// on 69 days late (QUOTA_NOT_ISSUED_IN_TIME), 固原市 sends 西吉县's cash
/// 104 days after its quota (CASH_NOT_SENT_IN_TIME), 美姑县 pays only a third
/// of its households (支出进度 below 50%), and 布拖县 moves 以工代赈 money
/// into its 衔接资金 account (DIVERTED).
async fn seed_quota_2026(
    seeder: &mut Seeder,
    signer: &mut impl FnMut(&str) -> Result<Signer>,
    root: &Signer,
    today: fundtrail_core::dates::Day,
    scale: u32,
) -> Result<()> {
    const PROGRAMME: &str = "2130599";
    const DOCUMENT: &str = "财农〔2026〕3号";
    const PROJECT_CODE: &str = "100000213059926000003";
    const PER_HOUSEHOLD_YUAN: u64 = 1_000;
    let window = |org: &str, until: fundtrail_core::dates::Day| {
        B::DeclareImportWindow(pb::DeclareImportWindow {
            org_id: org.into(),
            until_date: fundtrail_core::dates::format_date(until),
            document_no: "财办〔2026〕11号 直达资金系统数据迁移".into(),
        })
    };
    let mut orgs = vec!["mof"];
    for province in PROVINCES {
        orgs.push(province.org);
        for prefecture in province.prefectures {
            orgs.push(prefecture.org);
            orgs.extend(prefecture.counties.iter().map(|c| c.org));
        }
    }
    for org in &orgs {
        seeder.add_today(root, window(org, today));
    }
    let (household_max, person_max, idle_days_max, announcement_required) = PROGRAMME_RULES
        .iter()
        .find(|r| r.0 == PROGRAMME)
        .map(|r| (r.1, r.2, r.3, r.4))
        .expect("衔接资金 has rules");
    seeder.add(
        root,
        "2026-01-01",
        B::SetProgrammeRules(pb::SetProgrammeRules {
            programme_code: PROGRAMME.into(),
            document_no: "财农〔2026〕1号".into(),
            household_max_fen: fen_of_yuan(household_max),
            person_max_fen: fen_of_yuan(person_max),
            county_share_min_percent: 80,
            idle_days_max,
            announcement_required,
            quota_issue_days_max: 30,
            cash_follow_days_max: 30,
            monitored_only: false,
        }),
    );
    let quota_of =
        |households: u32| fen_of_yuan(PER_HOUSEHOLD_YUAN * u64::from(households * scale));
    let households_of = |p: &Prefecture| p.counties.iter().map(|c| c.households).sum::<u32>();
    let total: u32 = PROVINCES
        .iter()
        .flat_map(|p| p.prefectures)
        .map(households_of)
        .sum();
    let issue = |to: &str, from: Option<u64>, amount_fen: u64, document: &str| {
        B::IssueQuota(pb::IssueQuota {
            to_org_id: to.into(),
            from_quota_seq: from,
            amount_fen,
            programme_code: PROGRAMME.into(),
            fiscal_year: 2026,
            document_no: document.into(),
            direct: true,
            project_code: PROJECT_CODE.into(),
        })
    };
    let cash = |from: &str, to: &str, amount_fen: u64, document: &str, quota: u64| {
        let mut body = transfer(from, to, amount_fen, document, "直达资金拨付");
        if let B::Transfer(t) = &mut body {
            t.quota_seq = Some(quota);
        }
        body
    };
    seeder.add(
        root,
        "2026-01-05",
        B::Appropriation(pb::Appropriation {
            account_id: "mof-xczx".into(),
            amount_fen: quota_of(total),
            programme_code: PROGRAMME.into(),
            fiscal_year: 2026,
            document_no: DOCUMENT.into(),
            purpose: "下达2026年中央财政衔接推进乡村振兴补助资金".into(),
            memo: String::new(),
        }),
    );
    let top = seeder
        .post_now(
            root,
            "2026-01-10",
            issue("mof", None, quota_of(total), DOCUMENT),
        )
        .await?;
    for province in PROVINCES {
        let p = signer(province.org)?;
        let amount = quota_of(province.prefectures.iter().map(households_of).sum());
        let to_province = seeder
            .post_now(
                root,
                "2026-01-10",
                issue(province.org, Some(top), amount, DOCUMENT),
            )
            .await?;
        let account = format!("{}-xczx", province.org);
        seeder.add(
            root,
            "2026-01-20",
            cash("mof-xczx", &account, amount, DOCUMENT, to_province),
        );
        // 四川 passes its quota on 69 days after it was issued, past the 30
        // days its rules allow.
        let passed_on = if province.org == "sc-czt" {
            "2026-03-20"
        } else {
            "2026-01-25"
        };
        let document = format!("{}财农〔2026〕5号", &province.name[..3]);
        for prefecture in province.prefectures {
            let f = signer(prefecture.org)?;
            let amount = quota_of(households_of(prefecture));
            let to_prefecture = seeder
                .post_now(
                    &p,
                    passed_on,
                    issue(prefecture.org, Some(to_province), amount, &document),
                )
                .await?;
            let prefecture_account = format!("{}-xczx", prefecture.org);
            seeder.add(
                &p,
                passed_on,
                cash(
                    &account,
                    &prefecture_account,
                    amount,
                    &document,
                    to_prefecture,
                ),
            );
            let document = format!("{}财农〔2026〕8号", &prefecture.name[..3]);
            for county in prefecture.counties {
                let amount = quota_of(county.households);
                let issued = if province.org == "sc-czt" {
                    "2026-03-30"
                } else {
                    "2026-02-05"
                };
                let to_county = seeder
                    .post_now(
                        &f,
                        issued,
                        issue(county.org, Some(to_prefecture), amount, &document),
                    )
                    .await?;
                // 固原市 sends 西吉县's cash 104 days after its quota.
                let sent = if county.org == "xj-czj" {
                    "2026-05-20"
                } else {
                    issued
                };
                let county_account = format!("{}-xczx", county.org);
                seeder.add(
                    &f,
                    sent,
                    cash(
                        &prefecture_account,
                        &county_account,
                        amount,
                        &document,
                        to_county,
                    ),
                );
                seeder.flush().await?;
                let county_key = signer(county.org)?;
                monitor_2026(seeder, &county_key, county);
                pay_2026(seeder, &county_key, county, to_county, scale).await?;
            }
        }
    }
    // 布拖县 moves 以工代赈 money into its 衔接资金 account (挤占挪用).
    seeder.add(
        &signer("bt-czj")?,
        "2026-07-01",
        transfer(
            "bt-czj-ygdz",
            "bt-czj-xczx",
            fen_of_yuan(1_000_000),
            "布财〔2026〕12号",
            "调剂用于衔接资金项目",
        ),
    );
    // The migration is done: the windows close (昭觉县's reopens below).
    for org in &orgs {
        seeder.add_today(root, window(org, today - 1));
    }
    seeder.flush().await
}

/// Households a county came to monitor in April 2026 (防止返贫动态监测,
/// rules 10): its third and sixth. June's payments support them, except
/// in 美姑县, which pays every third household only (the second, fifth, …)
/// and so leaves its third unpaid (MONITORED_UNPAID); its sixth's risk is
/// cleared in May.
fn monitor_2026(seeder: &mut Seeder, county_key: &Signer, county: &County) {
    use pb::MonitoringCategory as M;
    let short = county.name.trim_end_matches("财政局");
    let mut monitor = |date: &str, h: u32, category: M| {
        seeder.add(
            county_key,
            date,
            B::SetMonitoring(pb::SetMonitoring {
                account_id: format!("{}-hh-{:06}", county.code, h + 1),
                category: category as i32,
                document_no: format!("{short}监测〔2026〕{}号", &date[5..7]),
                reason: "防止返贫动态监测".into(),
            }),
        );
    };
    monitor("2026-04-01", 2, M::Marginal);
    monitor("2026-04-01", 5, M::Unstable);
    if county.org == "mg-czj" {
        monitor("2026-05-15", 5, M::NotMonitored);
    }
}

/// A county's June 2026 household payments against its quota: ¥700.00 a
/// household (¥300.00 a member for households paid per person, up to
/// that), skipping the household found ineligible; 美姑县 pays only every
/// third household.
async fn pay_2026(
    seeder: &mut Seeder,
    county_key: &Signer,
    county: &County,
    quota_seq: u64,
    scale: u32,
) -> Result<()> {
    let short = county.name.trim_end_matches("财政局");
    for h in 0..county.households * scale {
        let ineligible = county.org == "dx-czj" && h == 4;
        if ineligible || (county.org == "mg-czj" && h % 3 != 1) {
            continue;
        }
        let amount_yuan = match h % 3 {
            0 => (300 * u64::from(1 + h % 6)).min(700),
            _ => 700,
        };
        seeder.add(
            county_key,
            "2026-06-20",
            B::Disbursement(pb::Disbursement {
                from_account_id: format!("{}-xczx", county.org),
                household_account_id: format!("{}-hh-{:06}", county.code, h + 1),
                amount_fen: fen_of_yuan(amount_yuan),
                sources: Vec::new(),
                programme_code: "2130599".into(),
                period: "2026-06".into(),
                document_no: format!("{short}直达〔2026〕6号"),
                memo: String::new(),
                quota_seq: Some(quota_seq),
            }),
        );
    }
    seeder.flush().await
}

/// `serve --demo` start-up: seed an empty data directory, or say the ledger
/// there is served unchanged.
pub async fn prepare(
    engine: Arc<Engine>,
    data_dir: &Path,
    created: bool,
    scale: u32,
) -> Result<()> {
    if !created {
        eprintln!(
            "{} already holds a ledger: serving it unchanged (no demo data added)",
            data_dir.display()
        );
        return Ok(());
    }
    let started = std::time::Instant::now();
    let count = seed(engine, data_dir, scale)
        .await
        .map_err(|e| anyhow!("seeding the demo failed: {e}"))?;
    eprintln!(
        "demo ledger seeded: {count} records in {:.1} s; org keys in {}",
        started.elapsed().as_secs_f64(),
        data_dir.join("demo-keys").display()
    );
    Ok(())
}
