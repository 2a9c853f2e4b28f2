//! The web console (docs/console.md) in a real browser: Debian's chromium, headless, driven
//! through chromedriver (WebDriver) against the real service, Redis, the embedded Kafka and
//! local receivers. One browser session walks the campaign manager's flow, scenario by
//! scenario (a failed one does not hide the rest); each step
//! asserts what the user sees. Set CONSOLE_SCREENSHOTS=docs/console to refresh the README's
//! screenshots.

use std::net::{SocketAddr, TcpStream};
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fantoccini::elements::Element;
use fantoccini::error::CmdError;
use fantoccini::{Client, ClientBuilder, Locator};
use futures::FutureExt;
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};
use webhook_dispatcher::auth::ClientAuth;
use webhook_dispatcher::demo::receiver::{Receiver, Reply};
use webhook_dispatcher::demo::token_server::{AnswerPaths, TokenServer, TokenServerOptions};

use crate::helpers::{Demo, TestApp, World, event, eventually, free_port};

const ADMIN_TOKEN: &str = "test-admin-token";

/// Where a program is: `$VAR` if set, else the first of `names` on `PATH`.
fn program(var: &str, names: &[&str]) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(var) {
        return Some(PathBuf::from(path)).filter(|p| p.is_file());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| names.iter().map(move |name| dir.join(name)))
        .find(|candidate| candidate.is_file())
}

/// chromedriver (in its own process group, so the browsers it starts go with it) and one
/// WebDriver session of a headless chromium with a fresh profile.
struct Browser {
    client: Client,
    driver: Child,
    /// The window's width and height: the page is used at this size throughout.
    size: (u32, u32),
    _profile: tempfile::TempDir,
}

/// A laptop's window, and a phone's (an iPhone 14's viewport in CSS pixels).
const DESKTOP: (u32, u32) = (1280, 800);
const PHONE: (u32, u32) = (390, 844);

impl Browser {
    /// Chromium and chromedriver, or a failure that says how to install them.
    fn programs() -> (PathBuf, PathBuf) {
        let missing = "the console tests need Chromium and its WebDriver: apt-get install -y chromium \
                       chromium-driver (./scripts/test installs them), or set CHROMIUM and CHROMEDRIVER";
        let chromium =
            program("CHROMIUM", &["chromium", "chromium-browser", "google-chrome"]).expect(missing);
        let chromedriver = program("CHROMEDRIVER", &["chromedriver"]).expect(missing);
        (chromium, chromedriver)
    }

    async fn start((chromium, chromedriver): (PathBuf, PathBuf), size: (u32, u32)) -> Browser {
        let port = free_port();
        let driver = {
            use std::os::unix::process::CommandExt;
            Command::new(&chromedriver)
                .arg(format!("--port={port}"))
                .arg("--allowed-ips=127.0.0.1")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .process_group(0)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", chromedriver.display()))
        };
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not listen on {addr}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let profile = tempfile::tempdir().expect("a profile directory");
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--disable-default-apps",
            "--hide-scrollbars",
            "--force-device-scale-factor=1",
        ]
        .map(String::from)
        .into_iter()
        .chain([
            format!("--window-size={},{}", size.0, size.1),
            format!("--user-data-dir={}", profile.path().display()),
        ])
        .collect::<Vec<_>>();
        let mut capabilities = serde_json::Map::new();
        capabilities.insert("browserName".into(), json!("chrome"));
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({"binary": chromium, "args": args}),
        );
        let mut driver = Browser::guard(driver);
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities)
            .connect(&format!("http://{addr}"))
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "no browser session from chromedriver ({}): {e}",
                    chromium.display()
                )
            });
        client.set_window_size(size.0, size.1).await.expect("resizes");
        Browser {
            client,
            driver: driver.take(),
            size,
            _profile: profile,
        }
    }

    /// Kills the driver's process group if the session cannot be made.
    fn guard(child: Child) -> DriverGuard {
        DriverGuard(Some(child))
    }

    async fn goto(&self, url: &str) {
        self.client.goto(url).await.expect("navigates");
    }

    async fn find(&self, css: &str) -> Element {
        self.client
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no {css}: {e}"))
    }

    /// The visible `<button>` or link whose text starts with `text`.
    async fn control(&self, text: &str) -> Element {
        self.visible_by_text("self::button or self::a", text).await
    }

    /// The visible `<button>` (a real one: the console's contract for its actions) whose
    /// text starts with `text`.
    async fn button(&self, text: &str) -> Element {
        self.visible_by_text("self::button", text).await
    }

    async fn visible_by_text(&self, kind: &str, text: &str) -> Element {
        let xpath =
            format!("//*[{kind}][starts-with(normalize-space(.), '{text}') and not(ancestor::*[@hidden])]");
        self.client
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::XPath(&xpath))
            .await
            .unwrap_or_else(|e| panic!("no {kind} {text:?}: {e}"))
    }

    /// Follows the link or presses the button whose text starts with `text`.
    async fn click(&self, text: &str) {
        self.press_found(|| self.control(text)).await;
    }

    /// Presses the `<button>` whose text starts with `text`.
    async fn press_button(&self, text: &str) {
        self.press_found(|| self.button(text)).await;
    }

    /// Presses what `find` finds; found again when the page re-rendered it in between (a
    /// list that arrives after the page is drawn replaces the controls around it).
    async fn press_found<F, Fut>(&self, find: F)
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Element>,
    {
        for _ in 0..3 {
            match self.try_press(&find().await).await {
                Err(e) if is_stale(&e) => tokio::time::sleep(Duration::from_millis(100)).await,
                pressed => return pressed.expect("clicks"),
            }
        }
        panic!("the control was replaced three times before it could be pressed");
    }

    /// Types `keys` into whatever has the focus.
    async fn keys(&self, keys: &str) {
        let focused = self.client.active_element().await.expect("a focused element");
        focused.send_keys(keys).await.expect("types");
    }

    /// Presses the element at `xpath`, once it is there.
    async fn press_xpath(&self, xpath: &str) {
        self.press_found(|| async {
            self.client
                .wait()
                .at_most(Duration::from_secs(10))
                .for_element(Locator::XPath(xpath))
                .await
                .unwrap_or_else(|e| panic!("no {xpath}: {e}"))
        })
        .await;
    }

    /// Clicks `element` once it is scrolled to the middle of the window, as a user would:
    /// at the edge it could be under the form's sticky footer.
    async fn try_press(&self, element: &Element) -> Result<(), CmdError> {
        let arg = serde_json::to_value(element).expect("an element reference");
        self.client
            .execute("arguments[0].scrollIntoView({block: 'center'})", vec![arg])
            .await?;
        element.click().await
    }

    /// Types `value` into the control named `name` (its template JSON path), replacing it.
    /// Found again when the page re-rendered it in between, as [`Browser::press_found`], and
    /// waited for while it cannot take input yet (on a phone, a page still scrolling it in
    /// or a menu still closing over it).
    async fn fill(&self, name: &str, value: &str) {
        for _ in 0..30 {
            let input = self.find(&format!("[name=\"{name}\"]")).await;
            let typed = match input.clear().await {
                Ok(()) => input.send_keys(value).await,
                Err(e) => Err(e),
            };
            match typed {
                Err(e) if is_stale(&e) || not_interactable(&e) => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                typed => return typed.expect("types"),
            }
        }
        panic!("the field {name} could not be filled for 3 s (replaced, or not interactable)");
    }

    async fn select(&self, name: &str, value: &str) {
        self.find(&format!("select[name=\"{name}\"]"))
            .await
            .select_by_value(value)
            .await
            .expect("selects");
    }

    async fn value(&self, name: &str) -> String {
        self.find(&format!("[name=\"{name}\"]"))
            .await
            .prop("value")
            .await
            .expect("a value")
            .unwrap_or_default()
    }

    /// The visible text of every element matching `css`, joined.
    async fn texts(&self, css: &str) -> String {
        let mut texts = Vec::new();
        for el in self.client.find_all(Locator::Css(css)).await.unwrap_or_default() {
            if el.is_displayed().await.unwrap_or(false) {
                texts.push(el.text().await.unwrap_or_default());
            }
        }
        texts.join(" | ")
    }

    /// Waits until a visible `role="status"` or `role="alert"` element says `expected`.
    async fn message(&self, expected: &str) -> String {
        self.wait_text("[role=status], [role=alert]", expected).await
    }

    /// No serious or critical accessibility violation on the page as it is now (axe-core,
    /// injected into the page; `place` says which page and state).
    async fn accessible(&self, place: &str) {
        let loaded = self
            .client
            .execute("return typeof axe !== 'undefined'", vec![])
            .await;
        if loaded.ok() != Some(json!(true)) {
            let source = std::fs::read_to_string(axe_core()).expect("axe-core's script");
            self.client
                .execute(&format!("{source}\nreturn true;"), vec![])
                .await
                .expect("axe-core loads");
        }
        let found = self
            .client
            .execute_async(
                "const done = arguments[arguments.length - 1];
                 axe.run(document, {resultTypes: ['violations']}).then(
                   (r) => done(r.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical')
                     .map((v) => `${v.id} (${v.impact}): ${v.help}: ${v.nodes.slice(0, 3).map((n) => n.target.join(' ')).join(', ')}`)),
                   (e) => done([`axe-core failed: ${e}`]));",
                vec![],
            )
            .await
            .expect("axe-core runs");
        assert_eq!(found, json!([]), "accessibility violations on {place}");
    }

    /// The page's URL now.
    async fn url(&self) -> String {
        self.client.current_url().await.expect("a URL").to_string()
    }

    /// Waits until `describe` (a script returning what has the focus) satisfies `wanted`:
    /// the page moves the focus once its new content is in place.
    async fn wait_focus(&self, describe: &str, wanted: impl Fn(&Value) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let focus = self.client.execute(describe, vec![]).await.expect("runs");
            if wanted(&focus) {
                return;
            }
            assert!(Instant::now() < deadline, "the focus stayed on {focus}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until no visible element matching `css` says `gone`.
    async fn wait_without(&self, css: &str, gone: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let text = self.texts(css).await;
            if !text.contains(gone) {
                return;
            }
            assert!(Instant::now() < deadline, "{css} still says {gone:?}: {text:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn wait_text(&self, css: &str, expected: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let text = self.texts(css).await;
            if text.contains(expected) {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "{css} never said {expected:?}; it says {text:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A PNG of the page into $CONSOLE_SCREENSHOTS, 1280 × `height` pixels, when it is set
    /// and the browser has a desktop's window (docs/console.md shows the desktop).
    async fn screenshot(&self, name: &str, height: u32) {
        let Some(dir) = std::env::var_os("CONSOLE_SCREENSHOTS") else {
            return;
        };
        if self.size != DESKTOP {
            return;
        }
        self.client.set_window_size(1280, height).await.expect("resizes");
        // Let layout settle and the caret stop blinking into the picture.
        self.client
            .execute(
                "document.activeElement && document.activeElement.blur(); window.scrollTo(0, 0)",
                vec![],
            )
            .await
            .expect("runs");
        tokio::time::sleep(Duration::from_millis(300)).await;
        let png = self.client.screenshot().await.expect("a screenshot");
        let dir = PathBuf::from(dir);
        std::fs::create_dir_all(&dir).expect("screenshot directory");
        std::fs::write(dir.join(format!("{name}.png")), png).expect("screenshot written");
        let (width, height) = self.size;
        self.client.set_window_size(width, height).await.expect("resizes");
    }

    async fn stop(self) {
        let Browser { client, driver, .. } = self;
        let _ = client.close().await;
        drop(DriverGuard(Some(driver)));
    }
}

fn is_stale(error: &CmdError) -> bool {
    matches!(error, CmdError::Standard(e) if e.error == fantoccini::error::ErrorStatus::StaleElementReference)
}

fn not_interactable(error: &CmdError) -> bool {
    matches!(error, CmdError::Standard(e) if e.error == fantoccini::error::ErrorStatus::ElementNotInteractable)
}

struct DriverGuard(Option<Child>);

impl DriverGuard {
    fn take(&mut self) -> Child {
        self.0.take().expect("driver present")
    }
}

impl Drop for DriverGuard {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            // The group is chromedriver and the browsers it started; its id is the driver's pid.
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", child.id())])
                .status();
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

async fn api(app: &TestApp, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    crate::helpers::admin_call(app, method, path, body).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_campaign_manager_sets_up_webhooks_and_follows_failures_in_the_browser() {
    a_campaign_manager_works_in_a_window_of(DESKTOP).await;
}

/// The same flow, step by step, on a phone's screen.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_campaign_manager_does_the_same_on_a_phone() {
    a_campaign_manager_works_in_a_window_of(PHONE).await;
}

async fn a_campaign_manager_works_in_a_window_of(size: (u32, u32)) {
    let programs = Browser::programs();
    let world = World::new(1);
    let crm = Receiver::start(|_, _| Reply::status(200)).await;
    let broken = Receiver::start(|_, _| Reply::status(500).saying("database is down")).await;
    // Refuses everything (400) until the test says its owner fixed it.
    let helpdesk_fixed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let helpdesk = {
        let fixed = helpdesk_fixed.clone();
        Receiver::start(move |_, _| {
            Reply::status(if fixed.load(std::sync::atomic::Ordering::SeqCst) {
                200
            } else {
                400
            })
        })
        .await
    };
    let tokens = Arc::new(TokenServer::start(TokenServerOptions::default()).await);
    let sms = {
        let tokens = tokens.clone();
        Receiver::start(move |r, _| Reply::status(if tokens.authorizes(r) { 200 } else { 401 })).await
    };
    // A template whose destination refuses everything, and a campaign (targetId 42) that
    // used it: one dead letter, "Webhook Dispatch Failed".
    world
        .put_template(json!({"id": "helpdesk-tickets", "name": "Helpdesk tickets",
                             "url": helpdesk.url("/tickets")}))
        .await;
    world
        .produce(&[(None, event("campaign-42-run", "helpdesk-tickets", 2))])
        .await;
    let app = TestApp::spawn(&world, &[]).await;
    let base = format!("http://{}/console/", app.api);

    // The page and its files come with a strict policy, from the binary.
    let page = reqwest::get(&base).await.expect("the console answers");
    assert_eq!(page.status(), 200);
    let header = |name: &str| {
        page.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    assert!(header("content-security-policy").contains("script-src 'self'"));
    assert!(!header("content-security-policy").contains("unsafe-inline"));
    assert_eq!(header("x-frame-options"), "DENY");
    let script = reqwest::get(format!("{base}app.js")).await.unwrap();
    assert!(
        script.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );

    eventually(
        Duration::from_secs(30),
        "the campaign's dead letter counted",
        || async { api(&app, "GET", "/v1/campaigns/42/stats", None).await.1["dead_lettered"] == 1 },
    )
    .await;

    let scene = Scene {
        world,
        app,
        crm,
        broken,
        helpdesk,
        helpdesk_fixed,
        tokens,
        sms,
        base,
    };
    let browser = Browser::start(programs, size).await;
    // Whatever happens in the browser, the browser and the service are stopped.
    let walked = tokio::time::timeout(
        Duration::from_secs(180),
        AssertUnwindSafe(walk(&browser, &scene)).catch_unwind(),
    )
    .await;
    browser.stop().await;
    scene.app.stop().await;
    match walked {
        Err(_) => panic!("the console flow took more than 180 s"),
        Ok(Err(panic)) => std::panic::resume_unwind(panic),
        Ok(Ok(())) => {}
    }
}

/// axe-core's script: `$AXE_CORE`, or where ./scripts/test installs it from npm.
fn axe_core() -> PathBuf {
    let path = std::env::var_os("AXE_CORE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("target/tools/axe/node_modules/axe-core/axe.min.js")
        });
    assert!(
        path.exists(),
        "the console's accessibility checks need axe-core: ./scripts/test installs it \
         (npm install --prefix target/tools/axe axe-core), or set AXE_CORE to its axe.min.js; {} is missing",
        path.display()
    );
    path
}

/// The service and the local endpoints the flow uses.
struct Scene {
    world: World,
    app: TestApp,
    crm: Receiver,
    broken: Receiver,
    helpdesk: Receiver,
    helpdesk_fixed: Arc<std::sync::atomic::AtomicBool>,
    tokens: Arc<TokenServer>,
    sms: Receiver,
    base: String,
}

/// The campaign manager's flow as scenarios sharing one signed-in session. Each starts from
/// the webhook list, and one that fails is reported without hiding the others (a scenario
/// that builds on what an earlier one saved says so in its doc, and fails with it).
async fn walk(browser: &Browser, scene: &Scene) {
    sign_in(browser, scene).await;
    let mut failed = Vec::new();
    scenario(
        &mut failed,
        "adds a Basic webhook",
        browser,
        scene,
        add_basic(browser, scene),
    )
    .await;
    scenario(
        &mut failed,
        "refuses what cannot be saved",
        browser,
        scene,
        refused_saves(browser, scene),
    )
    .await;
    scenario(
        &mut failed,
        "asks before unsaved changes are lost",
        browser,
        scene,
        unsaved_changes(browser, scene),
    )
    .await;
    scenario(
        &mut failed,
        "adds an OAuth 2.0 webhook",
        browser,
        scene,
        oauth_client_credentials(browser, scene),
    )
    .await;
    scenario(
        &mut failed,
        "generates a password-grant token",
        browser,
        scene,
        oauth_password_grant(browser, scene),
    )
    .await;
    scenario(
        &mut failed,
        "shapes and previews a body",
        browser,
        scene,
        body_template(browser, scene),
    )
    .await;
    scenario(
        &mut failed,
        "edits a webhook",
        browser,
        scene,
        edit_keeps_secrets(browser, scene),
    )
    .await;
    scenario(
        &mut failed,
        "deletes a webhook",
        browser,
        scene,
        delete_confirmed(browser, scene),
    )
    .await;
    scenario(
        &mut failed,
        "follows a failed campaign",
        browser,
        scene,
        campaign_stats(browser, scene),
    )
    .await;
    scenario(
        &mut failed,
        "pauses, cancels and resumes a campaign",
        browser,
        scene,
        campaign_control(browser, scene),
    )
    .await;
    scenario(
        &mut failed,
        "replays dead letters",
        browser,
        scene,
        dead_letters(browser, scene),
    )
    .await;
    scenario(
        &mut failed,
        "follows an event in the delivery log",
        browser,
        scene,
        event_timeline(browser, scene),
    )
    .await;
    scenario(
        &mut failed,
        "works from the keyboard alone",
        browser,
        scene,
        keyboard_only(browser, scene),
    )
    .await;
    scenario(
        &mut failed,
        "pages through webhooks",
        browser,
        scene,
        paging(browser, scene),
    )
    .await;
    // Last: it ends the session the others share.
    scenario(&mut failed, "signs out", browser, scene, sign_out(browser, scene)).await;
    assert!(
        failed.is_empty(),
        "{} of the console's scenarios failed:\n{}",
        failed.len(),
        failed.join("\n")
    );
}

/// Runs `steps` from the webhook list (the page loaded afresh, so nothing a failed scenario
/// left open is in the way), recording a failure in `failed` instead of stopping.
async fn scenario(
    failed: &mut Vec<String>,
    name: &str,
    browser: &Browser,
    scene: &Scene,
    steps: impl std::future::Future<Output = ()>,
) {
    let run = async {
        browser.goto(&scene.base).await;
        browser.control("Add Webhook").await;
        steps.await;
    };
    if let Err(panic) = AssertUnwindSafe(run).catch_unwind().await {
        let why = panic
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| panic.downcast_ref::<&str>().copied())
            .unwrap_or("a panic without a message");
        failed.push(format!("- {name}: {why}"));
    }
}

/// Tab and Enter, as WebDriver sends them.
const TAB: &str = "\u{e004}";
const ENTER: &str = "\u{e007}";

/// The focused element: tag, role and text.
const FOCUSED: &str =
    "const a = document.activeElement; return [a.tagName, a.getAttribute('role') || '', a.textContent];";

/// Signs in: a wrong token is refused; the right one, typed and sent with Enter, is kept for
/// the session and never put in the URL.
async fn sign_in(browser: &Browser, scene: &Scene) {
    let Scene { base, .. } = scene;
    // Sign in: a wrong token is refused; the right one, typed and sent with Enter, is kept
    // for the session and never put in the URL.
    browser.goto(base).await;
    let width = browser.client.execute("return innerWidth", vec![]).await.unwrap();
    assert_eq!(width, json!(browser.size.0), "the page is as wide as the window");
    browser.screenshot("sign-in", 640).await;
    browser.accessible("the sign-in page").await;
    browser.fill("token", "not-the-token").await;
    browser.click("Sign in").await;
    browser.message("refused").await;
    browser.fill("token", &format!("{ADMIN_TOKEN}\n")).await;
    browser.control("Add Webhook").await;
    let url = browser.client.current_url().await.unwrap();
    assert!(!url.as_str().contains(ADMIN_TOKEN), "{url}");
    browser.wait_text("table", "Helpdesk tickets").await;
}

/// A Basic webhook whose destination answers 200: tested, saved, listed.
async fn add_basic(browser: &Browser, scene: &Scene) {
    let Scene { crm, .. } = scene;
    // A Basic template whose destination answers 200: tested, saved, listed.
    browser.click("Add Webhook").await;
    browser.fill("name", "CRM feedback").await;
    browser.fill("id", "crm-feedback").await;
    browser.fill("url", &crm.url("/feedback")).await;
    browser.select("method", "PUT").await;
    browser.click("+ Key-Value Pair").await;
    browser.fill("headers.0.key", "X-Source").await;
    browser.fill("headers.0.value", "campaigns").await;
    browser.select("auth.type", "basic").await;
    browser.fill("auth.username", "campaigns").await;
    browser.fill("auth.password", "crm-pa55").await;
    browser.press_button("Test & Save").await;
    let saved = browser.message("Created “CRM feedback”").await;
    assert!(saved.contains("HTTP 200"), "{saved}");
    let list = browser.wait_text("table", "crm-feedback").await;
    let host = crm.addr().to_string();
    for seen in ["CRM feedback", "crm-feedback", "PUT", host.as_str(), "Basic"] {
        assert!(list.contains(seen), "{seen:?} in {list}");
    }
    let test = &crm.requests()[0];
    assert_eq!(test.method.as_str(), "PUT");
    assert_eq!(test.header("x-source"), Some("campaigns"));
    assert_eq!(
        test.header("authorization"),
        Some("Basic Y2FtcGFpZ25zOmNybS1wYTU1")
    );
}

/// Wrong fields named beside each, a failed test shown with nothing saved, and an ID in use
/// flagged (the webhook `add_basic` saved).
async fn refused_saves(browser: &Browser, scene: &Scene) {
    let Scene { app, crm, broken, .. } = scene;

    // One whose destination answers 500: a wrong field is named next to it, then the failed
    // test is shown and nothing is saved; the form keeps what was typed.
    browser.click("Add Webhook").await;
    browser.fill("name", "Broken CRM").await;
    browser.fill("id", "broken-crm").await;
    browser.fill("url", &broken.url("/hook")).await;
    // Two wrong fields: both named at once, beside each, in plain words and by their labels.
    browser.fill("batch_size", "0").await;
    browser.fill("timeout_ms", "-5").await;
    browser.press_button("Test & Save").await;
    let check = browser.message("Check Batch size and Timeout (ms).").await;
    assert!(!check.contains("batch_size"), "{check}");
    browser
        .wait_text(
            "[data-field=batch_size] .field-error",
            "Must be between 1 and 1,000 profiles.",
        )
        .await;
    let timeout = browser
        .wait_text("[data-field=timeout_ms] .field-error", "Must be a whole number")
        .await;
    assert!(
        !timeout.contains("u64") && !timeout.contains("invalid"),
        "{timeout}"
    );
    browser.fill("batch_size", "50").await;
    browser.fill("timeout_ms", "5000").await;
    // A header the dispatcher sets itself: the message appears by that header's row.
    browser.click("+ Key-Value Pair").await;
    browser.fill("headers.0.key", "Host").await;
    browser.fill("headers.0.value", "elsewhere.example").await;
    browser.press_button("Test & Save").await;
    browser
        .wait_text(".kv .field-error", "set by the dispatcher")
        .await;
    browser.click("Remove").await;
    browser.press_button("Test & Save").await;
    let failed = browser.message("Test failed").await;
    assert!(
        failed.contains("HTTP 500") && failed.contains("not saved"),
        "{failed}"
    );
    assert!(
        failed.contains("the destination has a problem"),
        "in plain words: {failed}"
    );
    assert!(
        failed.contains("The destination said: database is down"),
        "{failed}"
    );
    browser.screenshot("test-failed", 1000).await;
    browser.accessible("a failed Test & Save").await;
    assert_eq!(browser.value("name").await, "Broken CRM");
    assert_eq!(browser.value("url").await, broken.url("/hook"));
    assert_eq!(api(app, "GET", "/v1/templates/broken-crm", None).await.0, 404);

    // Adding with the ID of an existing webhook never replaces it: the ID is flagged.
    browser.fill("id", "crm-feedback").await;
    browser.press_button("Test & Save").await;
    browser
        .wait_text("[data-field=id] .field-error", "ID already in use")
        .await;
    let (_, kept) = api(app, "GET", "/v1/templates/crm-feedback", None).await;
    assert_eq!(
        kept["url"],
        crm.url("/feedback"),
        "the existing webhook is unchanged"
    );
    assert_eq!(kept["method"], "PUT");
}

/// What was typed is not lost without a question.
async fn unsaved_changes(browser: &Browser, scene: &Scene) {
    let Scene { broken, .. } = scene;
    browser.click("Add Webhook").await;
    browser.fill("name", "Broken CRM").await;
    browser.fill("url", &broken.url("/hook")).await;
    // What was typed is not lost without a question: Cancel and Back ask, and keeping the
    // changes stays on the form; discarding them leaves.
    let keep = "//dialog[@open]//button[normalize-space(.)='Cancel']";
    browser.click("Cancel").await;
    browser
        .wait_text("dialog[open]", "Discard unsaved changes?")
        .await;
    browser.press_xpath(keep).await;
    browser.client.back().await.expect("goes back");
    browser
        .wait_text("dialog[open]", "Discard unsaved changes?")
        .await;
    browser.press_xpath(keep).await;
    assert_eq!(browser.value("name").await, "Broken CRM");
    assert!(browser.url().await.ends_with("#/webhooks/new"));
    // A reload or a closed tab gets the browser's own question (WebDriver accepts those
    // prompts itself, so the page's answer to the event is what is checked).
    let unload = "const e = new Event('beforeunload', {cancelable: true}); \
                  window.dispatchEvent(e); return e.defaultPrevented;";
    assert_eq!(browser.client.execute(unload, vec![]).await.unwrap(), json!(true));
    browser.click("Cancel").await;
    browser.press_button("Discard changes").await;
    browser.wait_text("table", "crm-feedback").await;
    // A form left as it was opened asks nothing.
    browser.click("Add Webhook").await;
    browser.find("[name=\"name\"]").await;
    assert_eq!(
        browser.client.execute(unload, vec![]).await.unwrap(),
        json!(false)
    );
    browser.click("Cancel").await;
    browser.wait_text("table", "crm-feedback").await;
}

/// OAuth 2.0 client credentials: Generate, then Test & Save.
async fn oauth_client_credentials(browser: &Browser, scene: &Scene) {
    let Scene { tokens, sms, .. } = scene;
    // OAuth 2.0: Generate fetches a token from the local endpoint and shows its type, scopes
    // and expiry, the token itself masked; then Test & Save with it.
    browser.click("Add Webhook").await;
    let o = tokens.options().clone();
    // The ID is made from the Name, and one already in use is flagged before saving.
    browser.fill("name", "CRM feedback").await;
    assert_eq!(browser.value("id").await, "crm-feedback");
    browser.keys(TAB).await;
    browser
        .wait_text("[data-field=id] .field-error", "ID already in use")
        .await;
    browser.fill("name", "SMS gateway").await;
    assert_eq!(browser.value("id").await, "sms-gateway");
    browser.fill("url", &sms.url("/send")).await;
    browser.select("auth.type", "oauth2").await;
    browser.select("auth.grant_type", "client_credentials").await;
    browser.fill("auth.token_url", &tokens.url()).await;
    browser.fill("auth.client_id", &o.client_id).await;
    browser.fill("auth.client_secret", &o.client_secret).await;
    browser.fill("auth.scopes", "campaigns.write profiles.read").await;
    browser.select("auth.client_auth", "basic_header").await;
    browser.press_button("Generate").await;
    let generated = browser.message("Expires").await;
    assert!(generated.contains("Bearer"), "{generated}");
    assert!(generated.contains("campaigns.write profiles.read"), "{generated}");
    assert!(generated.contains("in 60 min"), "{generated}");
    assert!(generated.contains("****"), "{generated}");
    assert!(
        generated.contains("none returned"),
        "no refresh token: {generated}"
    );
    let source = browser.client.source().await.unwrap();
    for issued in tokens.issued() {
        assert!(!source.contains(&issued), "the token is never shown");
    }
    browser.screenshot("oauth2-form", 1750).await;
    browser.accessible("the OAuth 2.0 form after Generate").await;
    browser.press_button("Test & Save").await;
    browser.message("Created “SMS gateway”").await;
    browser.wait_text("table", "OAuth 2.0 · client credentials").await;
    browser.screenshot("webhooks", 640).await;
    browser.accessible("the webhook list").await;
}

/// The password grant against an endpoint with its own answer fields, and an expiry override.
async fn oauth_password_grant(browser: &Browser, scene: &Scene) {
    let Scene { sms, .. } = scene;
    // The password grant with the client's credentials in the body, against an endpoint
    // that names its answer's fields its own way (mapped in the form), and an expiry
    // override: Generate shows the override's expiry and the token masked.
    let mapped = TokenServer::start(TokenServerOptions {
        client_auth: ClientAuth::RequestBody,
        refresh_tokens: true,
        answer_paths: AnswerPaths {
            access_token: "data.token".into(),
            refresh_token: "data.refresh".into(),
            expires_in: "expiresIn".into(),
        },
        ..TokenServerOptions::default()
    })
    .await;
    let m = mapped.options().clone();
    browser.click("Add Webhook").await;
    browser.fill("name", "Loyalty points").await;
    browser.fill("id", "loyalty").await;
    browser.fill("url", &sms.url("/loyalty")).await;
    browser.select("auth.type", "oauth2").await;
    browser.select("auth.grant_type", "password").await;
    browser.fill("auth.token_url", &mapped.url()).await;
    browser.fill("auth.client_id", &m.client_id).await;
    browser.fill("auth.client_secret", &m.client_secret).await;
    browser.fill("auth.username", &m.username).await;
    browser.fill("auth.password", &m.password).await;
    browser.select("auth.client_auth", "request_body").await;
    // The common expiries fill the number; any other number is typed in.
    browser.select("expiry-choice", "3600").await;
    assert_eq!(browser.value("auth.expiry_seconds").await, "3600");
    browser.fill("auth.expiry_seconds", "600").await;
    // As in the seed: Generate comes right after the credentials, the answer mapping after it.
    let order = browser
        .client
        .execute(
            "const g = [...document.querySelectorAll('button')].find((b) => b.textContent.startsWith('Generate'));
             const m = [...document.querySelectorAll('summary')].find((s) => s.textContent.startsWith('Token answer mapping'));
             return Boolean(g.compareDocumentPosition(m) & Node.DOCUMENT_POSITION_FOLLOWING);",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(order, json!(true), "the token mapping follows Generate");
    browser
        .press_xpath("//summary[starts-with(normalize-space(.), 'Token answer mapping')]")
        .await;
    browser.fill("auth.access_token_path", "data.token").await;
    browser.fill("auth.refresh_token_path", "data.refresh").await;
    browser.fill("auth.expires_in_path", "expiresIn").await;
    // Every control of the form has a label (or an accessible name).
    let unlabelled = browser
        .client
        .execute(
            "return [...document.querySelectorAll('input, select, textarea')]
                .filter(c => c.type !== 'hidden' && !(c.labels && c.labels.length)
                    && !c.getAttribute('aria-label') && !c.getAttribute('aria-labelledby'))
                .map(c => c.name || c.id || c.outerHTML.slice(0, 80));",
            vec![],
        )
        .await
        .expect("runs");
    assert_eq!(unlabelled, json!([]), "controls without a label");
    // Generate from the keyboard: Enter on the focused button.
    browser
        .button("Generate")
        .await
        .send_keys("\u{e007}")
        .await
        .expect("Enter on Generate");
    let generated = browser.message("Expires").await;
    assert!(
        generated.contains("in 10 min"),
        "the override's expiry: {generated}"
    );
    assert!(
        generated.contains("returned (kept"),
        "a refresh token: {generated}"
    );
    assert!(generated.contains("****"), "{generated}");
    let asked = mapped.requests();
    assert_eq!(asked.len(), 1, "one token request");
    let source = browser.client.source().await.unwrap();
    for issued in mapped.issued() {
        assert!(!source.contains(&issued), "the token is never shown");
    }
    browser.click("Cancel").await;
    browser.press_button("Discard changes").await;
}

/// A body of the webhook's own: the preview renders it from the sample event before anything
/// is saved, a placeholder written inside JSON quotes is explained there, and Test & Save
/// sends what the preview showed.
async fn body_template(browser: &Browser, scene: &Scene) {
    let Scene { app, crm, .. } = scene;
    browser.click("Add Webhook").await;
    browser.fill("name", "Low rating tickets").await;
    browser.fill("url", &crm.url("/tickets")).await;
    browser.select("body.content_type", "application/json").await;
    browser
        .fill(
            "body.template",
            r#"{"subject": "Low rating from {{ profile.name }}"}"#,
        )
        .await;
    browser.press_button("Preview").await;
    let refused = browser
        .wait_text(".preview-pane [role=alert]", "invalid JSON")
        .await;
    assert!(refused.contains("~ profile.name"), "the fix is said: {refused}");
    browser
        .fill(
            "body.template",
            r#"{"subject": {{ "Low rating from " ~ profile.name }}}"#,
        )
        .await;
    browser.press_button("Preview").await;
    browser
        .wait_text(".preview-pane [role=status]", "2 requests")
        .await;
    let shown = browser
        .wait_text("pre.preview", "Low rating from sample-name")
        .await;
    assert_eq!(
        serde_json::from_str::<Value>(&shown).unwrap_or_default(),
        json!({"subject": "Low rating from sample-name"}),
        "{shown}"
    );
    browser.screenshot("body-preview", 1300).await;
    browser.accessible("the body editor and its preview").await;
    browser.press_button("Test & Save").await;
    browser.message("Created “Low rating tickets”").await;
    let sent = crm.requests().last().cloned().expect("the test request");
    assert_eq!(sent.uri, "/tickets");
    assert_eq!(sent.json(), json!({"subject": "Low rating from sample-name"}));
    let (_, saved) = api(app, "GET", "/v1/templates/low-rating-tickets", None).await;
    assert_eq!(saved["body"]["content_type"], "application/json", "{saved}");
}

/// Editing keeps the stored password and the fields the form does not show (the webhook
/// `add_basic` saved).
async fn edit_keeps_secrets(browser: &Browser, scene: &Scene) {
    let Scene { world, app, crm, .. } = scene;
    // Edit: the stored password shows as ****, and saving the form keeps it, as it keeps a
    // field the form does not show (set here behind the console's back).
    let (_, mut stored) = api(app, "GET", "/v1/templates/crm-feedback", None).await;
    stored["auth"]["password"] = json!("crm-pa55");
    stored["circuit_breaker"] = json!({"failure_threshold": 7});
    world.put_template(stored).await;
    browser.click("Webhooks").await;
    let edit = "//tr[contains(., 'crm-feedback')]//a[normalize-space(.)='Edit']";
    browser.press_xpath(edit).await;
    assert_eq!(browser.value("auth.password").await, "****");
    assert_eq!(browser.value("headers.0.key").await, "X-Source");
    browser.fill("name", "CRM feedback v2").await;
    browser.press_button("Test & Save").await;
    browser.message("Saved “CRM feedback v2”").await;
    browser.wait_text("table", "CRM feedback v2").await;
    let (_, edited) = api(app, "GET", "/v1/templates/crm-feedback", None).await;
    assert_eq!(edited["circuit_breaker"]["failure_threshold"], 7, "{edited}");
    let retested = crm.requests().last().cloned().unwrap();
    assert_eq!(
        retested.header("authorization"),
        Some("Basic Y2FtcGFpZ25zOmNybS1wYTU1")
    );
}

/// Deleting asks first (the webhook `oauth_client_credentials` saved).
async fn delete_confirmed(browser: &Browser, scene: &Scene) {
    let Scene { app, .. } = scene;
    // Delete, with confirmation: Escape keeps it, the dialog's Delete removes it.
    let delete = "//tr[contains(., 'SMS gateway')]//button[starts-with(normalize-space(.), 'Delete')]";
    browser.press_xpath(delete).await;
    browser.find("dialog[open]").await;
    browser.accessible("the delete confirmation").await;
    // Escape closes the dialog and deletes nothing.
    let focused = browser.client.active_element().await.unwrap();
    focused.send_keys("\u{e00c}").await.unwrap();
    assert!(browser.client.find(Locator::Css("dialog[open]")).await.is_err());
    browser.press_xpath(delete).await;
    browser.press_button("Delete webhook").await;
    browser.message("Deleted “SMS gateway”").await;
    assert_eq!(api(app, "GET", "/v1/templates/sms-gateway", None).await.0, 404);
    assert_eq!(api(app, "GET", "/v1/templates/crm-feedback", None).await.0, 200);
}

/// The failed campaign, from the list to its stats.
async fn campaign_stats(browser: &Browser, _: &Scene) {
    // The campaign whose deliveries were dead-lettered: listed (failed ones first) when the
    // page opens, so no targetId need be known; its row opens its stats.
    browser.click("Campaign stats").await;
    let listed = browser.wait_text("tbody", "Webhook Dispatch Failed").await;
    assert!(listed.starts_with("42"), "the failed campaign first: {listed}");
    browser.accessible("the campaign list").await;
    browser.press_xpath("//tbody//a[normalize-space(.)='42']").await;
    let state = browser.wait_text("[role=alert]", "Webhook Dispatch Failed").await;
    assert!(state.contains("1 delivery"), "{state}");
    assert!(browser.texts(".stats").await.contains("Dead-lettered"));
    assert!(browser.texts(".card").await.contains("HTTP 400"));
    browser.screenshot("campaign-stats", 760).await;
    browser.accessible("a failed campaign's stats").await;
    // An ID that is not a number: said, and campaign 42's stats leave the screen.
    browser.fill("targetId", "forty-two").await;
    browser.click("Show stats").await;
    browser.message("is a whole number").await;
    browser.wait_without("body", "Webhook Dispatch Failed").await;
    assert!(browser.texts(".stats").await.is_empty());
    browser.fill("targetId", "42").await;
    browser.click("Show stats").await;
    browser.wait_text("[role=alert]", "Webhook Dispatch Failed").await;
}

/// Campaign 42 paused, cancelled and resumed from its page, each after a confirmation; it
/// ends active, as the later scenarios need it.
async fn campaign_control(browser: &Browser, scene: &Scene) {
    let Scene { app, .. } = scene;
    let state = || async { api(app, "GET", "/v1/campaigns/42/stats", None).await.1["state"].clone() };
    browser.click("Campaign stats").await;
    browser.fill("targetId", "42").await;
    browser.click("Show stats").await;
    browser.wait_text(".card", "Sending").await;
    // Asked first: the dialog's Cancel changes nothing.
    browser.press_button("Pause campaign").await;
    browser.find("dialog[open]").await;
    browser.accessible("the pause confirmation").await;
    browser
        .press_xpath("//dialog//button[normalize-space(.)='Cancel']")
        .await;
    assert_eq!(state().await, "active");
    browser.press_button("Pause campaign").await;
    browser
        .press_xpath("//dialog//button[normalize-space(.)='Pause']")
        .await;
    browser.message("Campaign 42 is paused").await;
    browser.wait_text(".card", "Paused since").await;
    assert_eq!(state().await, "paused");
    browser.accessible("a paused campaign").await;
    browser.screenshot("campaign-paused", 760).await;
    // Cancelled, then resumed: the page says what each means for its deliveries.
    browser.press_button("Cancel campaign").await;
    browser
        .press_xpath("//dialog//button[normalize-space(.)='Cancel campaign']")
        .await;
    browser.message("Campaign 42 is cancelled").await;
    assert_eq!(state().await, "cancelled");
    browser.press_button("Resume campaign").await;
    browser
        .press_xpath("//dialog//button[normalize-space(.)='Resume']")
        .await;
    browser.message("Campaign 42 is sending again").await;
    assert_eq!(state().await, "active");
}

/// Dead letters listed, counted, replayed, and what became of the replay.
async fn dead_letters(browser: &Browser, scene: &Scene) {
    let Scene {
        app,
        helpdesk_fixed,
        helpdesk,
        ..
    } = scene;
    // Dead letters: opened from the navigation, they are listed at once (a dry run), with
    // reasons by their labels, and Replay stays secondary until a filter narrows it.
    browser
        .press_xpath("//nav//a[normalize-space(.)='Dead letters']")
        .await;
    browser.wait_text("table", "Rejected by the destination").await;
    browser.message("Dry run: nothing was replayed").await;
    let replay_class = browser
        .button("Replay")
        .await
        .attr("class")
        .await
        .unwrap()
        .unwrap_or_default();
    assert!(!replay_class.contains("primary"), "{replay_class}");
    // Then a dry-run count of one campaign's, and a replay confirmed in the dialog.
    browser.click("Campaign stats").await;
    browser.fill("targetId", "42").await;
    browser.click("Show stats").await;
    browser.click("See this campaign").await;
    browser.select("reason", "rejected").await;
    browser.press_button("Count (dry run)").await;
    // The count the filter asked for, not the one the page made when it opened.
    let counted = browser.message("1 dead letter match (reason rejected").await;
    assert!(counted.contains("nothing was replayed"), "{counted}");
    // The selection is in the URL, so a reload shows the same.
    let url = browser.client.current_url().await.unwrap();
    assert!(
        url.as_str().contains("reason=rejected") && url.as_str().contains("targetId=42"),
        "{url}"
    );
    browser.wait_text("table", "helpdesk-tickets").await;
    browser.screenshot("dead-letters", 760).await;
    browser.accessible("the dead-letter list").await;
    // A time range that ends before it starts is refused, not counted as zero.
    let range = "document.querySelector('[name=since]').value = '2026-12-07T10:00';
                 document.querySelector('[name=until]').value = '2026-12-06T10:00';";
    browser.client.execute(range, vec![]).await.unwrap();
    browser.press_button("Count (dry run)").await;
    browser.wait_text("[role=alert]", "is after").await;
    let clear = "for (const n of ['since', 'until']) document.querySelector(`[name=${n}]`).value = '';";
    browser.client.execute(clear, vec![]).await.unwrap();
    // The helpdesk's owner fixed it; the replay is delivered this time.
    helpdesk_fixed.store(true, std::sync::atomic::Ordering::SeqCst);
    let before = helpdesk.count();
    browser.press_button("Replay").await;
    browser.find("dialog[open]").await;
    browser.press_button("Replay 1").await;
    browser.message("Replayed 1 dead letter").await;
    eventually(
        Duration::from_secs(20),
        "the replayed delivery sent again",
        || async { helpdesk.count() > before },
    )
    .await;
    // The replay leaves its trace: the campaign's failed state clears once its dead letter
    // was replayed and delivered, and the dead-letter list marks the letter as replayed.
    eventually(
        Duration::from_secs(20),
        "the replay counted as recovered",
        || async { api(app, "GET", "/v1/campaigns/42/stats", None).await.1["recovered"] == 1 },
    )
    .await;
    browser.click("Campaign stats").await;
    browser.fill("targetId", "42").await;
    browser.click("Show stats").await;
    let recovered = browser.wait_text(".state", "Recovered").await;
    assert!(!recovered.contains("Webhook Dispatch Failed"), "{recovered}");
    assert!(browser.texts(".stats").await.contains("Recovered by replay"));
    browser
        .press_xpath("//nav//a[normalize-space(.)='Dead letters']")
        .await;
    browser.wait_text("tbody", "Replayed").await;
    browser.message("1 of them was replayed before").await;
    // And what became of it: delivered this time.
    browser.wait_text("td[data-label=Replayed]", "Delivered").await;
}

/// The delivery log: the campaign's recent failures open the event's timeline, which shows
/// the refused attempt and (after the replay `dead_letters` made) the delivered one; its
/// Replay says that nothing was left to replay.
async fn event_timeline(browser: &Browser, _: &Scene) {
    browser.click("Campaign stats").await;
    browser.fill("targetId", "42").await;
    browser.click("Show stats").await;
    let failures = "section[aria-labelledby=failures-title]";
    let listed = browser.wait_text(failures, "campaign-42-run").await;
    assert!(
        listed.contains("HTTP 400") && listed.contains("Dead-lettered: rejected"),
        "{listed}"
    );
    browser
        .press_xpath("//section[@aria-labelledby='failures-title']//a[normalize-space(.)='campaign-42-run']")
        .await;
    browser.wait_text("ol.timeline", "Dead-lettered: rejected").await;
    let timeline = browser.wait_text("ol.timeline", "Delivered").await;
    assert!(
        timeline.contains("HTTP 400") && timeline.contains("from retry tier 1"),
        "{timeline}"
    );
    browser.screenshot("event-timeline", 760).await;
    browser.accessible("an event's timeline").await;
    browser.press_button("Replay").await;
    browser.find("dialog[open]").await;
    browser
        .press_xpath("//dialog[@open]//button[normalize-space(.)='Replay']")
        .await;
    browser.message("Nothing was replayed").await;
}

/// The keyboard alone: add, search, delete.
async fn keyboard_only(browser: &Browser, scene: &Scene) {
    let Scene { app, crm, .. } = scene;
    // The keyboard alone: Tab to Add Webhook, type the fields, Enter tests and saves; then
    // search, Tab to the row's Delete, and confirm in the dialog.
    // Coming from another page, as a person would: the focus then starts at the page's top.
    browser.click("Dead letters").await;
    browser.find("table").await;
    browser.click("Webhooks").await;
    // The Webhooks page drawn and its list in (the Dead letters page has a table too): keys
    // sent before would go to the page being left.
    browser.control("Add Webhook").await;
    browser.find("table").await;
    browser.keys(TAB).await;
    browser.keys(ENTER).await;
    browser.find("[name=\"auth.type\"]").await;
    browser.keys("Keyboard hook").await;
    browser.keys(TAB).await;
    browser.keys("keyboard-hook").await;
    browser.keys(TAB).await;
    browser.keys(TAB).await;
    browser.keys(&format!("{}{ENTER}", crm.url("/keys"))).await;
    browser.message("Created “Keyboard hook”").await;
    browser.keys(TAB).await;
    browser.keys(TAB).await;
    browser.keys(&format!("keyboard{ENTER}")).await;
    // Only the match is listed.
    browser.wait_without("tbody", "crm-feedback").await;
    browser.wait_text("tbody", "keyboard-hook").await;
    for _ in 0..4 {
        browser.keys(TAB).await; // Search, the name, Edit, Delete
    }
    browser.keys(ENTER).await;
    browser.find("dialog[open]").await;
    browser.keys(TAB).await; // from Cancel to Delete webhook
    browser.keys(ENTER).await;
    browser.message("Deleted “Keyboard hook”").await;
    assert_eq!(api(app, "GET", "/v1/templates/keyboard-hook", None).await.0, 404);
    // The focus stays on what was said, not at the top of the page.
    browser.wait_focus(FOCUSED, |f| f[1] == "status").await;
    // The search is in the URL: a reload shows the same list.
    assert!(browser.url().await.ends_with("#/webhooks?q=keyboard"));
}

/// Cursor paging through the webhook list.
async fn paging(browser: &Browser, scene: &Scene) {
    let Scene { world, crm, .. } = scene;
    // Cursor paging: 20 webhooks a page, Next and Previous follow the API's cursor.
    for n in 0..22 {
        world
            .put_template(json!({"id": format!("paged-{n:02}"), "url": crm.url("/paged")}))
            .await;
    }
    browser.click("Webhooks").await;
    browser.fill("q", "").await; // the search above is kept; clear it
    browser.press_button("Search").await;
    browser.wait_text("tbody", "paged-00").await;
    let first = browser.texts("tbody tr").await;
    browser.press_button("Next").await;
    browser.wait_without("tbody", "paged-00").await;
    let second = browser.texts("tbody tr").await;
    // The focus moves to the new page's first row; the page is in the URL, so a reload
    // comes back to it.
    browser.wait_focus(FOCUSED, |f| f[0] == "A").await;
    let url = browser.client.current_url().await.unwrap();
    assert!(url.as_str().contains("#/webhooks?after="), "{url}");
    browser.client.refresh().await.unwrap();
    browser.wait_text("tbody", "paged-21").await;
    browser.wait_text(".pager", "Page 2").await;
    assert!(
        second.contains("paged-21"),
        "the last ones are on page 2: {second}"
    );
    assert!(
        !first.contains("paged-21"),
        "page 1 holds 20, not the last: {first}"
    );
    browser.press_button("Previous").await;
    browser.wait_text("tbody", "paged-00").await;
}

/// Signing out forgets the token.
async fn sign_out(browser: &Browser, _: &Scene) {
    // Signing out forgets the token, and says so as news, not as an error.
    browser.click("Sign out").await;
    browser.find("input[name=token]").await;
    browser.wait_text("[role=status]", "Signed out.").await;
    assert!(!browser.texts("[role=alert]").await.contains("Signed out"));
    let kept = browser
        .client
        .execute("return sessionStorage.length", vec![])
        .await
        .unwrap();
    assert_eq!(kept, json!(0));
}

/// Every page works from a phone's width up: at 390 × 844 nothing overflows sideways, the
/// navigation and Sign out stay on screen, each webhook shows its destination, and the
/// form's sticky bar keeps to its buttons; at 1280 × 800 a long Template ID wraps inside its
/// row instead of pushing Delete out of the card.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_page_fits_a_phone_and_a_long_id_fits_a_desktop() {
    // 168 characters without a hyphen to break at, under the 200 an ID may have.
    const LONG_ID: &str = "quarterly_loyalty_campaign_points_sync_to_the_crm_of_the_partner_in_the_emea_region_for_members_who_joined_through_the_mobile_app_and_opted_in_to_partner_offers_2026_q4";
    let programs = Browser::programs();
    let world = World::new(1);
    let crm = Receiver::start(|_, _| Reply::status(200)).await;
    world
        .put_template(json!({"id": LONG_ID, "name": "Loyalty points", "url": crm.url("/points")}))
        .await;
    let app = TestApp::spawn(&world, &[]).await;
    let base = format!("http://{}/console/", app.api);
    let browser = Browser::start(programs, DESKTOP).await;
    let checked = tokio::time::timeout(
        Duration::from_secs(90),
        AssertUnwindSafe(fit(&browser, &base)).catch_unwind(),
    )
    .await;
    browser.stop().await;
    app.stop().await;
    match checked {
        Err(_) => panic!("the layout checks took more than 90 s"),
        Ok(Err(panic)) => std::panic::resume_unwind(panic),
        Ok(Ok(())) => {}
    }

    async fn fit(browser: &Browser, base: &str) {
        let run =
            |script: &'static str| async move { browser.client.execute(script, vec![]).await.expect("runs") };
        browser.client.set_window_size(1280, 800).await.expect("resizes");
        browser.goto(base).await;
        browser.fill("token", &format!("{ADMIN_TOKEN}\n")).await;
        browser.wait_text("table", LONG_ID).await;
        let inside = run("const row = [...document.querySelectorAll('tbody tr')].find(r => r.textContent.includes('quarterly_loyalty'));
             const del = row.querySelector('.row-actions button').getBoundingClientRect();
             const card = row.closest('.card').getBoundingClientRect();
             return del.left >= card.left && del.right <= card.right + 0.5;")
        .await;
        assert_eq!(inside, json!(true), "Delete stays inside the card on a desktop");

        browser.client.set_window_size(390, 844).await.expect("resizes");
        // What every page must give a phone: no sideways scroll, the sections and Sign out
        // on screen.
        let fits = "const w = innerWidth, h = innerHeight;
            const on = (el) => { const r = el.getBoundingClientRect();
                                 return r.width > 0 && r.left >= 0 && r.right <= w + 0.5 && r.top >= 0 && r.bottom <= h; };
            return { width: w, overflow: document.documentElement.scrollWidth > w + 1,
                     signOut: on(document.getElementById('sign-out')),
                     nav: [...document.querySelectorAll('#nav a')].every(on) };";
        for (page, ready) in [
            ("#/webhooks", "table"),
            ("#/webhooks/new", "form"),
            ("#/campaigns", "form"),
            ("#/dead-letters", "form"),
        ] {
            browser.goto(&format!("{base}{page}")).await;
            browser.find(ready).await;
            let layout = browser.client.execute(fits, vec![]).await.expect("runs");
            assert!(layout["width"].as_u64() <= Some(390), "{layout}");
            assert_eq!(layout["overflow"], false, "{page} scrolls sideways: {layout}");
            assert_eq!(layout["signOut"], true, "{page}: Sign out off screen: {layout}");
            assert_eq!(layout["nav"], true, "{page}: a section link off screen: {layout}");
            browser.accessible(&format!("{page} on a phone")).await;
            if page == "#/webhooks" {
                browser.wait_text("table", LONG_ID).await;
                let destination = run("const cell = document.querySelector('tbody td[data-label=Destination]');
                     const r = cell.getBoundingClientRect();
                     return r.width > 0 && r.right <= innerWidth + 0.5 && getComputedStyle(cell).display !== 'none';")
                .await;
                assert_eq!(
                    destination,
                    json!(true),
                    "each webhook shows its destination on a phone"
                );
            }
            if page == "#/webhooks/new" {
                let bar = run("return document.querySelector('.form-footer').getBoundingClientRect().height / innerHeight;").await;
                assert!(
                    bar.as_f64() < Some(0.15),
                    "the sticky bar takes {bar} of the screen"
                );
            }
        }

        // The second day's flows on a phone: an ID in use, every field error at once, and the
        // question before unsaved changes are lost, each readable on the small screen.
        let on_screen = "const el = document.querySelector(arguments[0]);
            if (!el) return false;
            el.scrollIntoView({block: 'center'});
            const r = el.getBoundingClientRect();
            return r.width > 0 && r.left >= 0 && r.right <= innerWidth + 0.5 && r.top >= 0 && r.bottom <= innerHeight;";
        let visible = |css: &'static str| async move {
            let shown = browser
                .client
                .execute(on_screen, vec![json!(css)])
                .await
                .expect("runs");
            assert_eq!(shown, json!(true), "{css} on a phone's screen");
        };
        browser.goto(&format!("{base}#/webhooks/new")).await;
        browser.fill("name", "Loyalty points").await;
        assert_eq!(browser.value("id").await, "loyalty-points");
        browser.fill("id", LONG_ID).await;
        browser.keys("\u{e004}").await;
        browser
            .wait_text("[data-field=id] .field-error", "ID already in use")
            .await;
        visible("[data-field=id] .field-error").await;
        browser.fill("id", "loyalty-points").await;
        browser.fill("url", "example.com/points").await;
        browser.fill("batch_size", "0").await;
        browser.press_button("Test & Save").await;
        browser.message("Check Destination URL and Batch size.").await;
        visible("[data-field=url] .field-error").await;
        visible("[data-field=batch_size] .field-error").await;
        browser.click("Cancel").await;
        browser
            .wait_text("dialog[open]", "Discard unsaved changes?")
            .await;
        visible("dialog[open]").await;
        browser.press_button("Discard changes").await;
        browser.wait_text("table", LONG_ID).await;
        browser.goto(&format!("{base}#/campaigns")).await;
        browser
            .wait_text(".empty", "No campaign has sent anything yet")
            .await;
        visible(".empty").await;
        browser.accessible("the empty campaign list on a phone").await;
    }
}

/// The README's walkthrough in the browser, on a desktop and on a phone: a webhook for the
/// demo's helpdesk, with the Basic credentials the demo printed, passes Test & Save.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_demos_walkthrough_saves_a_webhook_for_its_helpdesk_in_the_browser() {
    let programs = Browser::programs();
    let demo = Demo::start();
    let mut walked = Vec::new();
    for size in [DESKTOP, PHONE] {
        let browser = Browser::start(programs.clone(), size).await;
        let outcome = tokio::time::timeout(
            Duration::from_secs(60),
            AssertUnwindSafe(add_for_the_helpdesk(&browser, &demo)).catch_unwind(),
        )
        .await;
        browser.stop().await;
        walked.push((size, outcome));
    }
    let status = demo.terminate();
    for (size, outcome) in walked {
        match outcome {
            Err(_) => panic!("the walkthrough at {size:?} took more than 60 s"),
            Ok(Err(panic)) => std::panic::resume_unwind(panic),
            Ok(Ok(())) => {}
        }
    }
    assert!(status.success(), "the demo ends cleanly: {status}");

    async fn add_for_the_helpdesk(browser: &Browser, demo: &Demo) {
        let name = format!("Low ratings {}px", browser.size.0);
        browser.goto(&format!("{}/console/", demo.api)).await;
        browser.fill("token", &format!("{}\n", demo.admin_token)).await;
        browser.find("tbody tr").await;
        browser.click("Add Webhook").await;
        browser.fill("name", &name).await;
        browser.fill("url", &format!("{}tickets", demo.helpdesk)).await;
        browser.select("auth.type", "basic").await;
        browser.fill("auth.username", &demo.username).await;
        browser.fill("auth.password", &demo.password).await;
        browser.press_button("Test & Save").await;
        let saved = browser.message(&format!("Created “{name}”")).await;
        assert!(saved.contains("HTTP 200"), "{saved}");
        browser
            .accessible("the list after the walkthrough's webhook")
            .await;
    }
}
