//! The testbed's certificates and keys, made with the `openssl` CLI (3.0 or newer): one CA, the
//! apiserver's serving certificate, a serving certificate for the other components' secure ports,
//! one client certificate per identity, and the service-account signing key pair. All keys are
//! ECDSA P-256: fast to generate and accepted everywhere Kubernetes takes a key.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::process::run;

/// The files under `<root>/pki`.
#[derive(Clone, Debug)]
pub struct Pki {
    /// The directory.
    pub dir: PathBuf,
}

/// A certificate and its key.
#[derive(Clone, Debug)]
pub struct Pair {
    /// PEM certificate.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

/// Client identities that get a certificate; `(file stem, CN, O)`.
const CLIENTS: [(&str, &str, Option<&str>); 3] = [
    ("admin", "kubernetes-admin", Some("system:masters")),
    // The controller manager runs with --use-service-account-credentials=false, so every
    // controller acts as this identity; the bootstrap role system:kube-controller-manager only
    // covers the manager's own needs (it expects one service account per controller), hence the
    // masters group.
    (
        "kube-controller-manager",
        "system:kube-controller-manager",
        Some("system:masters"),
    ),
    ("kube-scheduler", "system:kube-scheduler", None),
];

impl Pki {
    /// Creates every file under `dir`; `extra_ips` are added to the apiserver's serving SANs
    /// (the bridge gateway, through which pods reach the apiserver).
    pub fn create(dir: &Path, extra_ips: &[Ipv4Addr]) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io("create directory", dir, e))?;
        let pki = Self {
            dir: dir.to_path_buf(),
        };
        pki.ca()?;
        let mut apiserver_sans = vec![
            "IP:127.0.0.1".to_owned(),
            "IP:10.96.0.1".to_owned(),
            "DNS:localhost".to_owned(),
            "DNS:kubernetes".to_owned(),
            "DNS:kubernetes.default".to_owned(),
            "DNS:kubernetes.default.svc".to_owned(),
            "DNS:kubernetes.default.svc.cluster.local".to_owned(),
        ];
        apiserver_sans.extend(extra_ips.iter().map(|ip| format!("IP:{ip}")));
        pki.leaf("apiserver", "kube-apiserver", None, &apiserver_sans)?;
        let loopback = ["IP:127.0.0.1".to_owned(), "DNS:localhost".to_owned()];
        pki.leaf("components", "testbed-components", None, &loopback)?;
        for (stem, cn, org) in CLIENTS {
            pki.leaf(stem, cn, org, &[])?;
        }
        pki.service_account_keys()?;
        Ok(pki)
    }

    /// The files of an existing directory (created earlier by [`Pki::create`]).
    pub fn open(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
        }
    }

    /// The CA certificate.
    pub fn ca_cert(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    /// The CA key (the controller manager signs CSRs with it).
    pub fn ca_key(&self) -> PathBuf {
        self.dir.join("ca.key")
    }

    /// A certificate pair by file stem: `apiserver`, `components`, `admin`,
    /// `kube-controller-manager`, `kube-scheduler`, or one made by [`Pki::client`].
    pub fn pair(&self, stem: &str) -> Pair {
        Pair {
            cert: self.dir.join(format!("{stem}.crt")),
            key: self.dir.join(format!("{stem}.key")),
        }
    }

    /// Issues one more client certificate (`stem.crt`, `stem.key`) for `cn` in group `org`.
    pub fn client(&self, stem: &str, cn: &str, org: Option<&str>) -> Result<Pair> {
        self.leaf(stem, cn, org, &[])?;
        Ok(self.pair(stem))
    }

    /// The service-account signing key (private, PKCS#8).
    pub fn sa_key(&self) -> PathBuf {
        self.dir.join("sa.key")
    }

    /// The service-account verification key (public).
    pub fn sa_pub(&self) -> PathBuf {
        self.dir.join("sa.pub")
    }

    fn ca(&self) -> Result<()> {
        let config = "[req]\ndistinguished_name = dn\nprompt = no\n\
            [dn]\nCN = kvrocks-testbed-ca\n\
            [ext]\nbasicConstraints = critical,CA:TRUE\n\
            keyUsage = critical,keyCertSign,cRLSign,digitalSignature\n\
            subjectKeyIdentifier = hash\n";
        let cnf = self.write_config("ca", config)?;
        let (key, cert) = (self.ca_key(), self.ca_cert());
        openssl(&[
            "req",
            "-x509",
            "-config",
            &s(&cnf),
            "-extensions",
            "ext",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &s(&key),
            "-out",
            &s(&cert),
            "-days",
            "3650",
        ])
    }

    fn leaf(&self, stem: &str, cn: &str, org: Option<&str>, sans: &[String]) -> Result<()> {
        let mut config = String::from("[req]\ndistinguished_name = dn\nprompt = no\n[dn]\n");
        if let Some(o) = org {
            config.push_str(&format!("O = {o}\n"));
        }
        config.push_str(&format!(
            "CN = {cn}\n[ext]\nbasicConstraints = critical,CA:FALSE\n\
             keyUsage = critical,digitalSignature,keyEncipherment\n\
             extendedKeyUsage = serverAuth,clientAuth\nauthorityKeyIdentifier = keyid\n"
        ));
        if !sans.is_empty() {
            config.push_str(&format!("subjectAltName = {}\n", sans.join(",")));
        }
        let cnf = self.write_config(stem, &config)?;
        let pair = self.pair(stem);
        openssl(&[
            "req",
            "-x509",
            "-config",
            &s(&cnf),
            "-extensions",
            "ext",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &s(&pair.key),
            "-out",
            &s(&pair.cert),
            "-days",
            "3650",
            "-CA",
            &s(&self.ca_cert()),
            "-CAkey",
            &s(&self.ca_key()),
        ])
    }

    fn service_account_keys(&self) -> Result<()> {
        let (key, public) = (self.sa_key(), self.sa_pub());
        openssl(&[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            &s(&key),
        ])?;
        openssl(&["pkey", "-in", &s(&key), "-pubout", "-out", &s(&public)])
    }

    fn write_config(&self, stem: &str, text: &str) -> Result<PathBuf> {
        let path = self.dir.join(format!("{stem}.cnf"));
        std::fs::write(&path, text).map_err(|e| Error::io("write", &path, e))?;
        Ok(path)
    }
}

fn s(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

fn openssl(args: &[&str]) -> Result<()> {
    run("openssl", args).map(drop)
}
