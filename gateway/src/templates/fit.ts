import type { GraphTemplate, GraphTemplateComponent } from "./graph-templates.js";

// Whether a template send fits the approved template, component by component, as Meta checks it (its error 132000
// "number of parameters does not match", 132012 "parameter format does not match"): the body's {{n}} placeholders,
// the header's format and its parameter, each dynamic button by index and sub_type. Pure: the same answer for the
// same two inputs. Button kinds the gateway cannot send parameters for (flows, catalogs) are left to Meta.

/** A send's template, loosely typed: other message kinds add parameter types the check only compares by name. */
export interface RequestedTemplate {
  name: string;
  language: string;
  components?: ReadonlyArray<RequestedComponent> | undefined;
}

export interface RequestedComponent {
  type: string;
  sub_type?: string | undefined;
  index?: number | undefined;
  parameters: ReadonlyArray<{ type: string }>;
}

const PLACEHOLDER = /\{\{\s*([A-Za-z0-9_]+)\s*\}\}/g;
const MEDIA_HEADER_FORMATS = new Set(["IMAGE", "VIDEO", "DOCUMENT", "LOCATION"]);

/** Distinct {{n}} (or {{name}}) placeholders of a text, in order of first appearance. */
export function placeholders(text: string | undefined): string[] {
  if (!text) return [];
  return [...new Set([...text.matchAll(PLACEHOLDER)].map((m) => `{{${m[1]}}}`))];
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
}

function countProblem(what: string, expected: number, got: RequestedComponent | undefined, detail = "") {
  const count = got?.parameters.length ?? 0;
  if (count === expected) return undefined;
  const gotText = got ? String(count) : "none";
  return `${what} expects ${plural(expected, "parameter")}${detail}, got ${gotText}`;
}

interface ExpectedButton {
  subType: "url" | "quick_reply" | "copy_code";
  parameterType: string;
  /** A quick reply's payload may be left out: the button then answers with its own text. */
  optional: boolean;
  label: string;
}

/** What a send must give for one of the template's buttons; undefined: nothing may be given for it. */
function expectedButton(
  button: NonNullable<GraphTemplateComponent["buttons"]>[number],
): ExpectedButton | "static" | "unchecked" {
  switch (button.type.toUpperCase()) {
    case "URL":
      return placeholders(button.url).length > 0
        ? { subType: "url", parameterType: "text", optional: false, label: "url" }
        : "static";
    case "OTP":
      // Authentication templates: the code goes as the url button's parameter (copy code and one tap alike).
      return { subType: "url", parameterType: "text", optional: false, label: "otp" };
    case "COPY_CODE":
      return { subType: "copy_code", parameterType: "coupon_code", optional: false, label: "copy_code" };
    case "QUICK_REPLY":
      return { subType: "quick_reply", parameterType: "payload", optional: true, label: "quick_reply" };
    case "PHONE_NUMBER":
      return "static";
    default:
      return "unchecked";
  }
}

function headerProblem(header: GraphTemplateComponent | undefined, given: RequestedComponent | undefined) {
  if (!header) return given ? "header: the template has no header" : undefined;
  const format = (header.format ?? "TEXT").toUpperCase();
  if (MEDIA_HEADER_FORMATS.has(format)) {
    const type = format.toLowerCase();
    const problem = countProblem("header", 1, given, ` (${type})`);
    if (problem) return problem;
    const actual = given?.parameters[0]?.type;
    return actual === type ? undefined : `header expects a parameter of type ${type}, got ${actual}`;
  }
  if (format !== "TEXT") return undefined;
  const names = placeholders(header.text);
  const problem = countProblem(
    "header",
    names.length,
    given,
    names.length > 0 ? ` (${names.join(", ")})` : "",
  );
  if (problem) return problem;
  const wrong = given?.parameters.find((p) => p.type !== "text");
  return wrong ? `header expects text parameters, got ${wrong.type}` : undefined;
}

function buttonsProblem(
  buttons: NonNullable<GraphTemplateComponent["buttons"]>,
  given: ReadonlyArray<RequestedComponent>,
): string | undefined {
  const byIndex = new Map<number, RequestedComponent>();
  for (const component of given) {
    if (component.index === undefined) return "button: each button component needs its index";
    if (component.index >= buttons.length)
      return `button ${component.index}: the template has ${plural(buttons.length, "button")}`;
    if (byIndex.has(component.index)) return `button ${component.index}: given twice`;
    byIndex.set(component.index, component);
  }
  for (const [index, button] of buttons.entries()) {
    const expected = expectedButton(button);
    const component = byIndex.get(index);
    if (expected === "unchecked") continue;
    if (expected === "static") {
      if (component) return `button ${index} (${button.type.toLowerCase()}) takes no parameter`;
      continue;
    }
    if (!component) {
      if (expected.optional) continue;
      return `button ${index} (${expected.label}) expects 1 parameter, got none`;
    }
    if (component.sub_type !== expected.subType)
      return `button ${index} is a ${expected.label} button: send sub_type ${expected.subType}`;
    const problem = countProblem(`button ${index} (${expected.label})`, 1, component);
    if (problem) return problem;
    const actual = component.parameters[0]?.type;
    if (actual !== expected.parameterType)
      return `button ${index} (${expected.label}) expects a parameter of type ${expected.parameterType}, got ${actual}`;
  }
  return undefined;
}

/** The first way the send does not fit the approved template, naming the component; undefined when it fits. */
export function templateMismatch(approved: GraphTemplate, requested: RequestedTemplate): string | undefined {
  const find = (type: string) => approved.components.find((c) => c.type.toUpperCase() === type);
  const given = requested.components ?? [];
  for (const type of ["header", "body"]) {
    if (given.filter((c) => c.type === type).length > 1) return `${type}: given twice`;
  }
  const header = headerProblem(
    find("HEADER"),
    given.find((c) => c.type === "header"),
  );
  if (header) return header;
  const bodyNames = placeholders(find("BODY")?.text);
  const body = given.find((c) => c.type === "body");
  const bodyProblem = countProblem(
    "body",
    bodyNames.length,
    body,
    bodyNames.length > 0 ? ` (${bodyNames.join(", ")})` : "",
  );
  if (bodyProblem) return bodyProblem;
  const buttons = given.filter((c) => c.type === "button");
  const templateButtons = find("BUTTONS")?.buttons ?? [];
  if (templateButtons.length === 0 && buttons.length > 0) return "button: the template has no buttons";
  return buttonsProblem(templateButtons, buttons);
}
