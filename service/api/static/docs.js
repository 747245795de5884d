"use strict";
// Renders /openapi.json. Every string from the document goes through
// textContent (never innerHTML), so nothing in it can become markup.
(function () {
  var spec = null;

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    if (attrs) {
      Object.keys(attrs).forEach(function (key) {
        if (key === "text") node.textContent = attrs.text;
        else if (key === "className") node.className = attrs.className;
        else node.setAttribute(key, attrs[key]);
      });
    }
    (children || []).forEach(function (child) {
      if (child === null || child === undefined) return;
      node.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
    });
    return node;
  }

  function code(text) { return el("code", { text: String(text) }); }

  function paragraphs(text) {
    var box = el("div");
    String(text || "").split(/\n\n+/).forEach(function (part) {
      if (part.trim()) box.appendChild(el("p", { text: part }));
    });
    return box;
  }

  function resolve(ref) {
    if (typeof ref !== "string" || ref.indexOf("#/") !== 0) return null;
    var node = spec;
    var parts = ref.slice(2).split("/");
    for (var i = 0; i < parts.length; i++) {
      var key = parts[i].replace(/~1/g, "/").replace(/~0/g, "~");
      if (node === null || typeof node !== "object" || !(key in node)) return null;
      node = node[key];
    }
    return node;
  }

  function deref(node) {
    var seen = 0;
    while (node && typeof node === "object" && typeof node.$ref === "string" && seen < 20) {
      var next = resolve(node.$ref);
      if (!next) break;
      node = next;
      seen++;
    }
    return node;
  }

  function refName(ref) { return ref.split("/").pop(); }

  function anchorFor(kind, name) {
    return kind + "-" + String(name).replace(/[^A-Za-z0-9_-]/g, "_");
  }

  function refLink(ref) {
    var name = refName(ref);
    if (ref.indexOf("#/components/schemas/") === 0 && ref.split("/").length === 4) {
      return el("a", { className: "ref", href: "#" + anchorFor("schema", name), text: name });
    }
    return el("span", { className: "type", text: name });
  }

  // A short one-line description of a schema's type and constraints.
  function typeText(schema) {
    if (!schema || typeof schema !== "object") return schema === true ? "any" : "never";
    var parts = [];
    if (schema.type !== undefined) {
      parts.push(Array.isArray(schema.type) ? schema.type.join(" | ") : String(schema.type));
    }
    if (schema.const !== undefined) parts.push("= " + JSON.stringify(schema.const));
    if (schema.enum) parts.push("one of " + schema.enum.map(function (v) { return JSON.stringify(v); }).join(", "));
    if (schema.format) parts.push("format " + schema.format);
    if (schema.pattern) parts.push("pattern " + schema.pattern);
    if (schema.exclusiveMinimum !== undefined) parts.push("> " + schema.exclusiveMinimum);
    if (schema.minimum !== undefined) parts.push(">= " + schema.minimum);
    if (schema.maximum !== undefined) parts.push("<= " + schema.maximum);
    if (schema.minLength !== undefined) parts.push("length >= " + schema.minLength);
    if (schema.minItems !== undefined) parts.push("items >= " + schema.minItems);
    if (schema.maxItems !== undefined) parts.push("items <= " + schema.maxItems);
    return parts.join(", ");
  }

  // A nested outline of a schema: properties, items, alternatives, $refs as links.
  function outline(schema, depth, seen) {
    var list = el("ul", { className: depth === 0 ? "schema root" : "schema" });
    fill(list, schema, depth, seen || []);
    return list;
  }

  function fill(list, schema, depth, seen) {
    if (!schema || typeof schema !== "object") {
      list.appendChild(el("li", { className: "type", text: typeText(schema) }));
      return;
    }
    if (typeof schema.$ref === "string") {
      var target = resolve(schema.$ref);
      var line = el("li", null, [refLink(schema.$ref)]);
      list.appendChild(line);
      if (target && depth < 6 && seen.indexOf(schema.$ref) < 0) {
        line.appendChild(outline(target, depth + 1, seen.concat([schema.$ref])));
      }
      return;
    }
    var info = typeText(schema);
    if (schema.description) info += (info ? " — " : "") + schema.description;
    var leaf = !(schema.properties || schema.items || schema.anyOf || schema.oneOf || schema.allOf ||
                 (schema.additionalProperties && typeof schema.additionalProperties === "object"));
    if (info && (depth === 0 || leaf)) {
      list.appendChild(el("li", { className: leaf ? "type" : "note", text: info }));
    }
    ["anyOf", "oneOf", "allOf"].forEach(function (key) {
      if (!Array.isArray(schema[key])) return;
      var label = key === "allOf" ? "all of:" : "one of:";
      var item = el("li", null, [el("span", { className: "note", text: label })]);
      var sub = el("ul", { className: "schema" });
      schema[key].forEach(function (alt) { fill(sub, alt, depth + 1, seen); });
      item.appendChild(sub);
      list.appendChild(item);
    });
    if (schema.properties) {
      var required = schema.required || [];
      Object.keys(schema.properties).forEach(function (name) {
        var prop = schema.properties[name];
        var item = el("li", null, [el("span", { className: "prop", text: name })]);
        if (required.indexOf(name) >= 0) item.appendChild(el("span", { className: "req", text: "required" }));
        var shown = typeof prop.$ref === "string" ? null : typeText(prop);
        if (shown) item.appendChild(el("span", { className: "type", text: " " + shown }));
        if (prop.description) item.appendChild(el("span", { className: "note", text: " — " + prop.description }));
        if (typeof prop.$ref === "string" || prop.properties || prop.items || prop.anyOf ||
            prop.oneOf || prop.allOf || (prop.additionalProperties && typeof prop.additionalProperties === "object")) {
          if (depth < 6) item.appendChild(outline(stripDescription(prop), depth + 1, seen));
        }
        list.appendChild(item);
      });
      if (schema.additionalProperties === false) {
        list.appendChild(el("li", { className: "note", text: "no other keys" }));
      } else if (schema.additionalProperties === true) {
        list.appendChild(el("li", { className: "note", text: "other keys may appear (ignore them)" }));
      }
    }
    if (schema.additionalProperties && typeof schema.additionalProperties === "object") {
      var map = el("li", null, [el("span", { className: "note", text: "each value (any key):" })]);
      map.appendChild(outline(schema.additionalProperties, depth + 1, seen));
      list.appendChild(map);
    }
    if (schema.items) {
      var items = el("li", null, [el("span", { className: "note", text: "each item:" })]);
      items.appendChild(outline(schema.items, depth + 1, seen));
      list.appendChild(items);
    }
  }

  function stripDescription(schema) {
    var copy = {};
    Object.keys(schema).forEach(function (key) { if (key !== "description") copy[key] = schema[key]; });
    return copy;
  }

  function securityText(op) {
    var security = op.security || spec.security;
    if (!security || !security.length) return "No token needed.";
    var anonymous = security.some(function (req) { return Object.keys(req).length === 0; });
    var schemes = [];
    security.forEach(function (req) { Object.keys(req).forEach(function (k) { if (schemes.indexOf(k) < 0) schemes.push(k); }); });
    if (!schemes.length) return "No token needed.";
    if (anonymous) return "Token optional (" + schemes.join(", ") + "): with auth on, callers without it get no details; a wrong token is a 401.";
    return "Token required when auth is on (" + schemes.join(", ") + ").";
  }

  function parametersTable(params) {
    var table = el("table");
    table.appendChild(el("thead", null, [el("tr", null, ["name", "in", "schema", "required", "description"].map(function (h) {
      return el("th", { scope: "col", text: h });
    }))]));
    var body = el("tbody");
    params.forEach(function (raw) {
      var p = deref(raw) || {};
      var schema = p.schema || {};
      var schemaCell = el("td");
      if (schema.anyOf) {
        schemaCell.appendChild(el("span", { className: "type", text: schema.anyOf.map(typeText).join(" | ") }));
      } else {
        schemaCell.appendChild(el("span", { className: "type", text: typeText(schema) }));
      }
      var example = p.example !== undefined ? p.example : null;
      if (example === null && p.examples) {
        example = Object.keys(p.examples).map(function (k) { return p.examples[k].value; }).join(", ");
      }
      var desc = el("td", { text: p.description || "" });
      if (example !== null && example !== "") {
        desc.appendChild(el("div", { className: "note" }, ["e.g. ", code(example)]));
      }
      body.appendChild(el("tr", null, [
        el("td", null, [code(p.name || "?")]),
        el("td", { text: p.in || "" }),
        schemaCell,
        el("td", { text: p.required ? "yes" : "no" }),
        desc,
      ]));
    });
    table.appendChild(body);
    return table;
  }

  function mediaBlock(mediaType, media) {
    var box = el("div");
    box.appendChild(el("div", { className: "media", text: mediaType }));
    if (media && media.schema) box.appendChild(outline(media.schema, 0));
    if (media && media["x-events"]) {
      var events = el("ul", { className: "schema" });
      Object.keys(media["x-events"]).forEach(function (name) {
        var item = el("li", null, [el("span", { className: "prop", text: "event: " + name })]);
        item.appendChild(outline(media["x-events"][name], 1));
        events.appendChild(item);
      });
      box.appendChild(el("div", { className: "note", text: "events:" }));
      box.appendChild(events);
    }
    if (media && media.example !== undefined) {
      var text = typeof media.example === "string" ? media.example : JSON.stringify(media.example, null, 2);
      box.appendChild(el("div", { className: "note", text: "example:" }));
      box.appendChild(el("pre", { text: text }));
    }
    return box;
  }

  function responsesBlock(responses) {
    var box = el("div");
    Object.keys(responses).sort().forEach(function (status) {
      var response = deref(responses[status]) || {};
      var item = el("div", { className: "response" });
      var cls = "status s" + String(status).charAt(0);
      item.appendChild(el("div", null, [
        el("span", { className: cls, text: status }), " ",
        el("span", { text: response.description || "" }),
      ]));
      var headers = response.headers || {};
      var names = Object.keys(headers);
      if (names.length) {
        item.appendChild(el("div", { className: "note", text: "headers: " + names.map(function (n) {
          var h = deref(headers[n]) || {};
          var s = h.schema ? typeText(h.schema) : "";
          return n + (s ? " (" + s + ")" : "");
        }).join("; ") }));
      }
      Object.keys(response.content || {}).forEach(function (mediaType) {
        item.appendChild(mediaBlock(mediaType, response.content[mediaType]));
      });
      box.appendChild(item);
    });
    return box;
  }

  function operationSection(path, method, op, others) {
    var id = op.operationId ? anchorFor("op", op.operationId) : anchorFor("op", method + path);
    var section = el("section", { className: "op", id: id });
    var heading = el("h3", null, [el("span", { className: "method " + method, text: method })]);
    others.forEach(function (m) { heading.appendChild(el("span", { className: "method " + m, text: m })); });
    heading.appendChild(el("span", { className: "path", text: path }));
    if (op.summary) heading.appendChild(el("span", { className: "summary", text: op.summary }));
    section.appendChild(heading);
    if (others.indexOf("head") >= 0) {
      section.appendChild(el("div", { className: "note", text: "HEAD: as GET, headers only." }));
    }
    section.appendChild(el("div", { className: "security", text: securityText(op) }));
    if (op.description) section.appendChild(paragraphs(op.description));
    if (op.parameters && op.parameters.length) {
      section.appendChild(el("h4", { text: "Parameters" }));
      section.appendChild(parametersTable(op.parameters));
    }
    if (op.requestBody) {
      var body = deref(op.requestBody) || {};
      section.appendChild(el("h4", { text: "Request body" + (body.required ? " (required)" : "") }));
      if (body.description) section.appendChild(el("p", { className: "note", text: body.description }));
      Object.keys(body.content || {}).forEach(function (mediaType) {
        section.appendChild(mediaBlock(mediaType, body.content[mediaType]));
      });
    }
    section.appendChild(el("h4", { text: "Responses" }));
    section.appendChild(responsesBlock(op.responses || {}));
    return { section: section, id: id };
  }

  function render(doc) {
    spec = doc;
    var info = doc.info || {};
    document.getElementById("title").textContent = (info.title || "API") + " API reference";
    document.title = (info.title || "API") + " API reference";
    document.getElementById("version").textContent =
      "version " + (info.version || "?") + " · OpenAPI " + (doc.openapi || "?") + " · ";
    var raw = el("a", { href: "/openapi.json", text: "openapi.json" });
    document.getElementById("version").appendChild(raw);

    var main = document.getElementById("main");
    var nav = document.getElementById("nav");
    var intro = el("div", { className: "intro" });
    if (info.summary) intro.appendChild(el("p", null, [el("strong", { text: info.summary })]));
    if (info.description) intro.appendChild(paragraphs(info.description));
    main.appendChild(intro);

    var groups = {};
    var order = (doc.tags || []).map(function (t) { return t.name; });
    var methods = ["get", "post", "put", "patch", "delete", "options", "trace"];
    Object.keys(doc.paths || {}).forEach(function (path) {
      var item = doc.paths[path];
      methods.forEach(function (method) {
        var op = item[method];
        if (!op) return;
        var tag = (op.tags && op.tags[0]) || "other";
        if (order.indexOf(tag) < 0) order.push(tag);
        (groups[tag] = groups[tag] || []).push({ path: path, method: method, op: op, item: item });
      });
      // A path with HEAD but no GET still gets its own section.
      if (item.head && !item.get) {
        (groups.other = groups.other || []).push({ path: path, method: "head", op: item.head, item: item });
        if (order.indexOf("other") < 0) order.push("other");
      }
    });

    order.forEach(function (tag) {
      var entries = groups[tag];
      if (!entries) return;
      var tagInfo = (doc.tags || []).filter(function (t) { return t.name === tag; })[0];
      var title = el("h2", { id: anchorFor("tag", tag), text: tag });
      main.appendChild(title);
      if (tagInfo && tagInfo.description) main.appendChild(el("p", { className: "note", text: tagInfo.description }));
      nav.appendChild(el("h2", { text: tag }));
      var navList = el("ul");
      nav.appendChild(navList);
      entries.forEach(function (entry) {
        var others = entry.method === "get" && entry.item.head ? ["head"] : [];
        var made = operationSection(entry.path, entry.method, entry.op, others);
        main.appendChild(made.section);
        var link = el("a", { href: "#" + made.id }, [
          el("span", { className: "mono", text: entry.method.toUpperCase() + " " }),
          el("span", { className: "mono", text: entry.path }),
        ]);
        navList.appendChild(el("li", null, [link]));
      });
    });

    var components = doc.components || {};
    var schemas = components.schemas || {};
    if (Object.keys(schemas).length) {
      main.appendChild(el("h2", { id: "schemas", text: "Schemas" }));
      nav.appendChild(el("h2", null, [el("a", { href: "#schemas", text: "Schemas" })]));
      var schemaList = el("ul");
      nav.appendChild(schemaList);
      Object.keys(schemas).forEach(function (name) {
        var section = el("section", { className: "op", id: anchorFor("schema", name) });
        section.appendChild(el("h3", null, [el("span", { className: "path", text: name })]));
        section.appendChild(outline(schemas[name], 0, ["#/components/schemas/" + name]));
        main.appendChild(section);
        schemaList.appendChild(el("li", null, [el("a", { href: "#" + anchorFor("schema", name), text: name })]));
      });
    }
    var shared = components.responses || {};
    if (Object.keys(shared).length) {
      main.appendChild(el("h2", { id: "responses", text: "Shared responses" }));
      var box = el("section", { className: "op" });
      box.appendChild(responsesBlock(shared));
      main.appendChild(box);
    }
    if (location.hash) {
      var target = document.getElementById(location.hash.slice(1));
      if (target) target.scrollIntoView();
    }
  }

  function fail(message) {
    var box = document.getElementById("error");
    box.textContent = message;
    box.hidden = false;
    document.getElementById("version").textContent = "could not load /openapi.json";
  }

  fetch("/openapi.json", { headers: { Accept: "application/json" }, cache: "no-store" })
    .then(function (response) {
      if (!response.ok) throw new Error("GET /openapi.json answered HTTP " + response.status);
      return response.json();
    })
    .then(render)
    .catch(function (error) { fail(String(error && error.message ? error.message : error)); });
})();
