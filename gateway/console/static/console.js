// The crmgate console: a voyzu front end built only on what the API serves to browsers,
// its /api/{resource}/class modules and RequestPoller, as a customer's own would be.
import { AuthInput } from "/api/auth/class";
import {
  ContactAssetList,
  ContactsDatatable,
  ContactsSearchInput,
  WebContact,
} from "/api/contacts/class";
import {
  CustomFieldDefinition,
  CustomFieldInput,
  CustomFieldList,
} from "/api/custom-fields/class";
import { ExportInput, ExportResult } from "/api/exports/class";
import { ImportInput, ImportResult } from "/api/imports/class";
import { RequestPoller } from "/api/request/class";

const $ = (id) => document.getElementById(id);
const SEARCH_DELAY_MS = 250;
// Background requests report progress at most five times a second: poll at that pace.
const POLL_MS = 250;
const FIELDS = ["FirstName", "LastName", "Email", "Phone", "Company"];

/** A refused call: `message` is the API's ErrorMessage, meant for people. */
class ApiError extends Error {
  constructor(message, status) {
    super(message);
    this.status = status;
  }
}

/** POST /api/{path} with a class instance as the JSON body; the JSON answer, or a Blob. */
async function call(path, input) {
  let response;
  try {
    response = await fetch(`/api/${path}`, {
      method: "POST",
      credentials: "same-origin",
      headers: input === undefined ? {} : { "Content-Type": "application/json" },
      body: input === undefined ? undefined : JSON.stringify(input),
    });
  } catch {
    throw new ApiError("The server cannot be reached. Check your connection and try again.", 0);
  }
  const json = (response.headers.get("Content-Type") ?? "").startsWith("application/json");
  if (!response.ok) {
    const body = json ? await response.json() : {};
    // A session that ended while in use: back to signing in (focus moves only then).
    if (response.status === 401 && path !== "auth") showSignIn(signedIn);
    throw new ApiError(body.ErrorMessage ?? `The server answered ${response.status}.`, response.status);
  }
  return json ? response.json() : response.blob();
}

/** Runs `path` with `?async=true` and follows it with RequestPoller, showing its progress. */
async function inBackground(path, input, progress, commentary) {
  const { RequestId } = await call(`${path}?async=true`, input);
  return new Promise((resolve, reject) => {
    new RequestPoller(RequestId, { intervalMs: POLL_MS, backoff: 1 })
      .onTick((status) => {
        progress.value = status.PercentComplete;
        progress.setAttribute("aria-valuetext", `${status.PercentComplete}%`);
        commentary.textContent = status.Commentary || status.ProcessStatus;
      })
      .onProcessed((result) => resolve(result))
      .onFail((status) => reject(new ApiError(status.ErrorMessage, status.StatusCode)))
      .start();
  });
}

function say(text) {
  $("status").textContent = text;
}

function showError(element, error) {
  element.textContent = error instanceof ApiError ? error.message : String(error);
}

function element(tag, text, attributes = {}) {
  const made = document.createElement(tag);
  if (text !== undefined) made.textContent = text;
  for (const [name, value] of Object.entries(attributes)) made.setAttribute(name, value);
  return made;
}

// Views ------------------------------------------------------------------------------

const VIEWS = ["sign-in", "contacts", "imports", "exports"];
let signedIn = false;

function show(view, focus = true) {
  for (const name of VIEWS) $(`view-${name}`).hidden = name !== view;
  for (const link of document.querySelectorAll("#nav a")) {
    if (link.dataset.view === view) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  if (focus) document.querySelector(`#view-${view} h2`).focus();
}

function showSignIn(focus = true) {
  signedIn = false;
  $("nav").hidden = true;
  $("sign-out").hidden = true;
  for (const dialog of document.querySelectorAll("dialog[open]")) dialog.close();
  show("sign-in", focus);
}

function showApp(focus = true) {
  signedIn = true;
  $("nav").hidden = false;
  $("sign-out").hidden = false;
  const view = location.hash.slice(1);
  show(VIEWS.includes(view) && view !== "sign-in" ? view : "contacts", focus);
  loadFields().catch((error) => showError($("contacts-error"), error));
  search();
}

window.addEventListener("hashchange", () => {
  if (signedIn) show(VIEWS.includes(location.hash.slice(1)) ? location.hash.slice(1) : "contacts");
});

$("sign-in-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("sign-in-error").textContent = "";
  try {
    await call("auth", new AuthInput({ Email: $("sign-in-email").value, Password: $("sign-in-password").value }));
    $("sign-in-password").value = "";
    say("Signed in.");
    showApp();
  } catch (error) {
    showError($("sign-in-error"), error);
    $("sign-in-password").focus();
  }
});

$("sign-out").addEventListener("click", async () => {
  try {
    await call("auth/sign-out");
  } catch {
    // Signed out already: the session is gone either way.
  }
  say("Signed out.");
  showSignIn();
});

// Contacts ---------------------------------------------------------------------------

const query = { text: "", page: 1, sortBy: "LastName", descending: false };
let fields = [];
let searches = 0;
let lastPage = 1;

async function search() {
  const mine = ++searches;
  const input = new ContactsSearchInput({
    SearchText: query.text,
    Page: query.page,
    PageSize: Number($("page-size").value),
    SortBy: query.sortBy,
    SortDescending: query.descending,
  });
  $("contacts-table").setAttribute("aria-busy", "true");
  try {
    const table = ContactsDatatable.fromJSON(await call("contacts/search", input));
    if (mine !== searches) return; // a later search is on its way
    $("contacts-error").textContent = "";
    renderContacts(table);
  } catch (error) {
    if (mine === searches) showError($("contacts-error"), error);
  } finally {
    if (mine === searches) $("contacts-table").removeAttribute("aria-busy");
  }
}

function renderContacts(table) {
  lastPage = Math.max(1, Math.ceil(table.TotalCount / table.PageSize));
  const rows = table.Rows.map((json) => WebContact.fromJSON(json));
  $("contacts-rows").replaceChildren(
    ...rows.map((contact) => {
      const row = element("tr");
      const cells = [
        ["First name", contact.FirstName],
        ["Last name", contact.LastName],
        ["Email", contact.Email],
        ["Company", contact.Company],
        ["Phone", contact.Phone],
        ["Created", contact.CreatedDate.slice(0, 10)],
      ];
      for (const [label, value] of cells) row.append(element("td", value, { "data-label": label }));
      const actions = element("td", undefined, { "data-label": "Actions", class: "row-actions" });
      const who = contact.Email;
      actions.append(
        button("Edit", `Edit ${who}`, () => openContact(contact)),
        button("Assets", `Assets of ${who}`, () => openAssets(contact)),
        button("Delete", `Delete ${who}`, () => deleteContact(contact)),
      );
      row.append(actions);
      return row;
    }),
  );
  if (!rows.length) {
    const empty = element("td", query.text ? "No contact matches." : "No contacts yet.", { colspan: "7" });
    $("contacts-rows").replaceChildren(element("tr"));
    $("contacts-rows").firstChild.append(empty);
  }
  // Counting stops 1,000 past the page: then TotalCount is one more than it counted.
  const more = table.TotalCount === table.Page * table.PageSize + 1001;
  const counted = more ? `more than ${table.TotalCount - 1}` : String(table.TotalCount);
  const count = `${counted} contact${table.TotalCount === 1 ? "" : "s"}`;
  $("search-summary").textContent = query.text ? `${count} matching “${query.text}”` : count;
  const pages = more ? `more than ${Math.floor((table.TotalCount - 1) / table.PageSize)}` : lastPage;
  $("page-label").textContent = `Page ${table.Page} of ${pages}`;
  $("previous-page").disabled = table.Page <= 1;
  $("next-page").disabled = table.Page >= lastPage;
  for (const header of document.querySelectorAll("#contacts-table th[data-sort]")) {
    const sorted = header.dataset.sort === query.sortBy;
    header.setAttribute("aria-sort", sorted ? (query.descending ? "descending" : "ascending") : "none");
  }
}

function button(text, label, action) {
  const made = element("button", text, { type: "button", "aria-label": label });
  made.addEventListener("click", action);
  return made;
}

let typing;
$("search").addEventListener("input", () => {
  clearTimeout(typing);
  typing = setTimeout(() => {
    query.text = $("search").value.trim();
    query.page = 1;
    search();
  }, SEARCH_DELAY_MS);
});
$("page-size").addEventListener("change", () => {
  query.page = 1;
  search();
});
$("previous-page").addEventListener("click", () => {
  query.page = Math.max(1, query.page - 1);
  search();
});
$("next-page").addEventListener("click", () => {
  query.page = Math.min(lastPage, query.page + 1);
  search();
});
for (const header of document.querySelectorAll("#contacts-table th[data-sort]")) {
  header.querySelector("button").addEventListener("click", () => {
    const column = header.dataset.sort;
    query.descending = query.sortBy === column ? !query.descending : false;
    query.sortBy = column;
    query.page = 1;
    search();
  });
}

async function loadFields(input = new CustomFieldInput({ Fields: [] })) {
  // Defining no field changes nothing and answers every field the customer has.
  const list = CustomFieldList.fromJSON(await call("custom-fields/update", input));
  fields = list.Fields.map((json) => CustomFieldDefinition.fromJSON(json));
  $("custom-field-list").replaceChildren(
    ...fields.map((field) =>
      element("li", `${field.Name}: ${field.Type}${field.Options.length ? ` (${field.Options.join(", ")})` : ""}`),
    ),
  );
  return fields;
}

$("custom-field-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("custom-field-error").textContent = "";
  const options = $("field-options").value.split(",").map((option) => option.trim()).filter(Boolean);
  const field = new CustomFieldDefinition({
    Name: $("field-name").value.trim(),
    Type: $("field-type").value,
    Options: $("field-type").value === "select" ? options : [],
  });
  try {
    await loadFields(new CustomFieldInput({ Fields: [field] }));
    $("custom-field-form").reset();
    say(`Custom field ${field.Name} saved.`);
  } catch (error) {
    showError($("custom-field-error"), error);
  }
});

/** An input for a custom field, by its type. */
function customInput(field, value, id) {
  if (field.Type === "select" || field.Type === "boolean") {
    const choices = field.Type === "select" ? field.Options : ["true", "false"];
    const select = element("select", undefined, { id });
    select.append(element("option", "(not set)", { value: "" }));
    for (const choice of choices) {
      const label = field.Type === "boolean" ? (choice === "true" ? "Yes" : "No") : choice;
      select.append(element("option", label, { value: choice }));
    }
    select.value = value;
    return select;
  }
  const type = { number: "number", date: "date" }[field.Type] ?? "text";
  const input = element("input", undefined, { id, type });
  if (type === "number") input.setAttribute("step", "any");
  input.value = value;
  return input;
}

let editing = null;

function openContact(contact) {
  editing = contact;
  $("contact-form").reset();
  $("contact-error").textContent = "";
  $("contact-dialog-title").textContent = contact ? `Edit ${contact.Email}` : "New contact";
  for (const name of FIELDS) $(`contact-${kebab(name)}`).value = contact?.[name] ?? "";
  $("contact-custom").replaceChildren(
    ...fields.flatMap((field, index) => {
      const id = `contact-custom-${index}`;
      const label = element("label", `${field.Name} (${field.Type})`, { for: id });
      const input = customInput(field, contact?.CustomFields[field.Name] ?? "", id);
      input.dataset.field = field.Name;
      return [label, input];
    }),
  );
  $("contact-dialog").showModal();
  $("contact-first-name").focus();
}

function kebab(name) {
  return name.replace(/[A-Z]/g, (letter, at) => (at ? "-" : "") + letter.toLowerCase());
}

$("new-contact").addEventListener("click", () => openContact(null));
$("contact-cancel").addEventListener("click", () => $("contact-dialog").close());
$("contact-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const values = Object.fromEntries(FIELDS.map((name) => [name, $(`contact-${kebab(name)}`).value.trim()]));
  const custom = {};
  for (const input of $("contact-custom").querySelectorAll("[data-field]")) {
    if (input.value !== "") custom[input.dataset.field] = input.value;
  }
  const contact = new WebContact({ ...values, CustomFields: custom });
  try {
    if (editing) await call(`contacts/update/${encodeURIComponent(editing.Id)}`, contact);
    else await call("contacts/create", contact);
    $("contact-dialog").close();
    say(`Saved ${contact.Email}.`);
    search();
  } catch (error) {
    showError($("contact-error"), error);
  }
});

async function deleteContact(contact) {
  if (!confirm(`Delete ${contact.Email}?`)) return;
  try {
    await call(`contacts/delete/${encodeURIComponent(contact.Id)}`);
    say(`Deleted ${contact.Email}.`);
    await search();
    $("search").focus();
  } catch (error) {
    showError($("contacts-error"), error);
  }
}

async function openAssets(contact) {
  $("assets-title").textContent = `Assets of ${contact.Email}`;
  $("assets-error").textContent = "";
  $("assets-list").replaceChildren(element("li", "Loading…"));
  $("assets-dialog").showModal();
  $("assets-close").focus();
  try {
    const list = ContactAssetList.fromJSON(await call(`contacts/assets/${encodeURIComponent(contact.Id)}`));
    $("assets-list").replaceChildren(...list.Assets.map(assetItem));
    if (!list.Assets.length) $("assets-list").replaceChildren(element("li", "No assets."));
  } catch (error) {
    $("assets-list").replaceChildren();
    showError($("assets-error"), error);
  }
}

function assetItem(asset) {
  const item = element("li");
  if (asset.Type === "image") {
    // An <img> never runs an SVG's scripts; the media URL is served sandboxed besides.
    item.append(element("img", undefined, {
      src: asset.Url, alt: asset.Alt || asset.Name, width: "96", height: "96", loading: "lazy",
    }));
  }
  const about = element("div");
  const link = element("a", asset.Name, { href: asset.Url, target: "_blank", rel: "noopener noreferrer" });
  about.append(link, element("span", `${asset.MimeType} · ${size(asset.Size)} · ${asset.CreatedDate.slice(0, 10)}`));
  if (asset.Description) about.append(element("span", asset.Description));
  item.append(about);
  return item;
}

function size(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KiB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}

$("assets-close").addEventListener("click", () => $("assets-dialog").close());

// Imports ----------------------------------------------------------------------------

$("import-file").addEventListener("change", async () => {
  const file = $("import-file").files[0];
  $("import-error").textContent = "";
  $("import-mapping").hidden = true;
  $("import-start").disabled = true;
  if (!file) return;
  try {
    const headers = file.name.toLowerCase().endsWith(".xlsx") ? await xlsxHeaders(file) : await csvHeaders(file);
    renderMapping(headers);
    $("import-start").disabled = false;
  } catch (error) {
    showError($("import-error"), error);
  }
});

function renderMapping(headers) {
  const targets = [...FIELDS, ...fields.map((field) => `custom:${field.Name}`)];
  $("import-mapping-rows").replaceChildren(
    ...headers.flatMap((header, index) => {
      if (!header) return [];
      const id = `import-map-${index}`;
      const select = element("select", undefined, { id });
      select.dataset.header = header;
      select.append(element("option", "by its name", { value: "" }));
      for (const target of targets) select.append(element("option", target, { value: target }));
      const guess = targets.find((target) => same(target.replace(/^custom:/, ""), header));
      select.value = guess ?? "";
      return [element("label", header, { for: id }), select];
    }),
  );
  $("import-mapping").hidden = false;
}

function same(a, b) {
  const plain = (text) => text.toLowerCase().replace(/[\s_-]/g, "");
  return plain(a) === plain(b);
}

$("import-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const file = $("import-file").files[0];
  if (!file) return;
  const mapping = {};
  for (const select of $("import-mapping-rows").querySelectorAll("select")) {
    if (select.value) mapping[select.dataset.header] = select.value;
  }
  $("import-error").textContent = "";
  $("import-result").hidden = true;
  $("import-start").disabled = true;
  $("import-progress").value = 0;
  try {
    const input = new ImportInput({ FileName: file.name, Content: await base64(file), Mapping: mapping });
    const result = ImportResult.fromJSON(
      await inBackground("imports/create", input, $("import-progress"), $("import-commentary")),
    );
    renderImport(result);
    say(`Imported ${result.ImportedCount} contacts.`);
    search();
  } catch (error) {
    showError($("import-error"), error);
  } finally {
    $("import-start").disabled = false;
  }
});

function renderImport(result) {
  const parts = [`${result.ImportedCount} contacts imported`, `${result.Errors.length} rows refused`];
  if (result.IgnoredColumns.length) parts.push(`columns ignored: ${result.IgnoredColumns.join(", ")}`);
  $("import-summary").textContent = `${parts.join("; ")}.`;
  $("import-error-rows").replaceChildren(
    ...result.Errors.map((error) => {
      const row = element("tr");
      row.append(element("td", String(error.Row), { "data-label": "Row" }));
      row.append(element("td", error.Message, { "data-label": "Problem" }));
      return row;
    }),
  );
  $("import-errors").hidden = !result.Errors.length;
  $("import-result").hidden = false;
}

function base64(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result.slice(reader.result.indexOf(",") + 1));
    reader.onerror = () => reject(new ApiError("The file cannot be read.", 0));
    reader.readAsDataURL(file);
  });
}

/** The header row of a CSV file: its delimiter guessed as the server does (, ; or tab). */
async function csvHeaders(file) {
  const text = (await file.slice(0, 65536).text()).replace(/^\uFEFF/, "");
  const firstLine = text.split(/\r?\n/, 1)[0];
  const count = (mark) => firstLine.split(mark).length;
  const delimiter = [",", ";", "\t"].reduce((best, mark) => (count(mark) > count(best) ? mark : best));
  const cells = [];
  let cell = "";
  let quoted = false;
  for (let at = 0; at < text.length; at++) {
    const char = text[at];
    if (quoted) {
      if (char === '"' && text[at + 1] === '"') (cell += '"'), at++;
      else if (char === '"') quoted = false;
      else cell += char;
    } else if (char === '"') quoted = true;
    else if (char === delimiter) cells.push(cell), (cell = "");
    else if (char === "\n" || char === "\r") break;
    else cell += char;
  }
  cells.push(cell);
  return cells.map((header) => header.trim());
}

/** The first row of an XLSX workbook's first sheet (a zip of XML parts). */
async function xlsxHeaders(file) {
  const parts = await unzip(await file.arrayBuffer());
  const xml = async (name) => {
    const bytes = await parts(name);
    return bytes && new DOMParser().parseFromString(new TextDecoder().decode(bytes), "application/xml");
  };
  const all = (doc, tag) => (doc ? [...doc.getElementsByTagNameNS("*", tag)] : []);
  const workbook = await xml("xl/workbook.xml");
  const relations = await xml("xl/_rels/workbook.xml.rels");
  const first = all(workbook, "sheet")[0];
  const relation = first && [...first.attributes].find((attribute) => attribute.localName === "id")?.value;
  const target = all(relations, "Relationship").find((r) => r.getAttribute("Id") === relation)?.getAttribute("Target");
  if (!target) throw new ApiError("This is not an XLSX workbook.", 0);
  const sheet = await xml(target.startsWith("/") ? target.slice(1) : `xl/${target}`);
  const shared = all(await xml("xl/sharedStrings.xml"), "si").map((si) =>
    all(si, "t").map((t) => t.textContent).join(""),
  );
  const headers = [];
  for (const cell of all(all(sheet, "row")[0], "c")) {
    const column = (cell.getAttribute("r") ?? "").replace(/\d+$/, "");
    const index = [...column].reduce((sum, letter) => sum * 26 + letter.charCodeAt(0) - 64, 0) - 1;
    const value = cell.getAttribute("t") === "s"
      ? shared[Number(all(cell, "v")[0]?.textContent)]
      : all(cell, "t").map((t) => t.textContent).join("") || all(cell, "v")[0]?.textContent;
    headers[index >= 0 ? index : headers.length] = (value ?? "").trim();
  }
  return Array.from(headers, (header) => header ?? "");
}

/** A zip archive's members by name: a function answering a member's bytes (or null). */
async function unzip(buffer) {
  const view = new DataView(buffer);
  let end = buffer.byteLength - 22;
  while (end >= 0 && view.getUint32(end, true) !== 0x06054b50) end--;
  if (end < 0) throw new ApiError("This is not an XLSX workbook.", 0);
  const members = new Map();
  let at = view.getUint32(end + 16, true);
  for (let left = view.getUint16(end + 10, true); left > 0; left--) {
    const nameLength = view.getUint16(at + 28, true);
    const name = new TextDecoder().decode(new Uint8Array(buffer, at + 46, nameLength));
    members.set(name, {
      method: view.getUint16(at + 10, true),
      size: view.getUint32(at + 20, true),
      local: view.getUint32(at + 42, true),
    });
    at += 46 + nameLength + view.getUint16(at + 30, true) + view.getUint16(at + 32, true);
  }
  return async (name) => {
    const member = members.get(name);
    if (!member) return null;
    const start = member.local + 30 + view.getUint16(member.local + 26, true) + view.getUint16(member.local + 28, true);
    const stored = new Uint8Array(buffer, start, member.size);
    if (member.method === 0) return stored;
    const inflated = new Blob([stored]).stream().pipeThrough(new DecompressionStream("deflate-raw"));
    return new Uint8Array(await new Response(inflated).arrayBuffer());
  };
}

// Exports ----------------------------------------------------------------------------

let exported = null;

$("export-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("export-error").textContent = "";
  $("export-download").hidden = true;
  $("export-start").disabled = true;
  $("export-progress").value = 0;
  const input = new ExportInput({
    Search: new ContactsSearchInput({ SearchText: $("export-search").value.trim() }),
    Format: $("export-format").value,
  });
  try {
    const result = ExportResult.fromJSON(
      await inBackground("exports/create", input, $("export-progress"), $("export-commentary")),
    );
    exported = result.Spreadsheet;
    $("export-download").textContent = `Download ${exported.Name} (${exported.RowCount} contacts)`;
    $("export-download").hidden = false;
    $("export-download").focus();
    say(`Export ${exported.Name} is ready.`);
  } catch (error) {
    showError($("export-error"), error);
  } finally {
    $("export-start").disabled = false;
  }
});

$("export-download").addEventListener("click", async () => {
  try {
    const file = await call(`spreadsheets/get/${encodeURIComponent(exported.Id)}`);
    const url = URL.createObjectURL(file);
    const link = element("a", undefined, { href: url, download: exported.Name });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60_000);
  } catch (error) {
    showError($("export-error"), error);
  }
});

// Start: a session cookie from an earlier visit may still be good.
try {
  await call("users/list");
  showApp(false);
} catch (error) {
  if (error.status !== 401) showSignIn(false);
}
document.body.dataset.ready = "true";
