import type { ContactObject } from "../../http/outbound-schemas.js";

// A contact card as WhatsApp Web carries it: a vCard 3.0 (RFC 2426) inside a contactMessage. Every value is
// escaped, so a name with a comma, a semicolon or a line break cannot add a property of its own.

function escaped(value: string | undefined): string {
  return (value ?? "")
    .replace(/\\/g, "\\\\")
    .replace(/\r\n|\r|\n/g, "\\n")
    .replace(/([,;])/g, "\\$1");
}

/** A parameter value (`type=…`) cannot carry what would end it. */
function parameter(value: string | undefined): string {
  return (value ?? "").replace(/[^A-Za-z0-9_-]/g, "");
}

export function vcardOf(contact: ContactObject): string {
  const n = contact.name;
  const lines = [
    "BEGIN:VCARD",
    "VERSION:3.0",
    `N:${[n.last_name, n.first_name, n.middle_name, n.prefix, n.suffix].map(escaped).join(";")}`,
    `FN:${escaped(n.formatted_name)}`,
  ];
  if (contact.org) {
    lines.push(`ORG:${escaped(contact.org.company)};${escaped(contact.org.department)}`);
    if (contact.org.title) lines.push(`TITLE:${escaped(contact.org.title)}`);
  }
  for (const phone of contact.phones ?? []) {
    const type = phone.type ? `;type=${parameter(phone.type)}` : "";
    // `waid` is what makes WhatsApp offer "Message" for the number.
    const waid = phone.wa_id ? `;waid=${phone.wa_id}` : "";
    lines.push(`TEL${type}${waid}:${escaped(phone.phone ?? (phone.wa_id ? `+${phone.wa_id}` : ""))}`);
  }
  for (const email of contact.emails ?? []) {
    lines.push(`EMAIL${email.type ? `;type=${parameter(email.type)}` : ""}:${escaped(email.email)}`);
  }
  for (const url of contact.urls ?? []) {
    lines.push(`URL${url.type ? `;type=${parameter(url.type)}` : ""}:${escaped(url.url)}`);
  }
  for (const a of contact.addresses ?? []) {
    const type = a.type ? `;type=${parameter(a.type)}` : "";
    lines.push(`ADR${type}:;;${[a.street, a.city, a.state, a.zip, a.country].map(escaped).join(";")}`);
  }
  if (contact.birthday) lines.push(`BDAY:${contact.birthday}`);
  lines.push("END:VCARD");
  return `${lines.join("\n")}\n`;
}
