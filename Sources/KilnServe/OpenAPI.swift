/// The API's OpenAPI 3.0 document, served at /api/openapi.json. ServeTests hold it to the
/// router (every /api/ route is described, nothing else is) and schemathesis holds the answers
/// to its schemas: change a route or a model and this document in the same commit.
enum OpenAPI {
    static let document = #"""
        {
          "components": {
            "parameters": {
              "family": {"description": "A family name.", "in": "path", "name": "family", "required": true, "schema": {"type": "string"}},
              "id": {
                "description": "A build id (kiln logs --failed lists failed ones).",
                "in": "path",
                "name": "id",
                "required": true,
                "schema": {"type": "string"}
              },
              "limit": {
                "description": "Items per page.",
                "in": "query",
                "name": "limit",
                "required": false,
                "schema": {"default": 50, "maximum": 500, "minimum": 1, "type": "integer"}
              },
              "name": {
                "description": "An image name (FAMILY-vYYYYMMDD-N).",
                "in": "path",
                "name": "name",
                "required": true,
                "schema": {"type": "string"}
              },
              "offset": {
                "description": "Items to skip.",
                "in": "query",
                "name": "offset",
                "required": false,
                "schema": {"default": 0, "maximum": 10000000, "minimum": 0, "type": "integer"}
              }
            },
            "responses": {
              "Problem": {
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
                "description": "What was wrong: a bad parameter (400) or an unknown name (404)"
              },
              "Unauthorized": {
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
                "description": "A token is needed (a listener beyond loopback)"
              }
            },
            "schemas": {
              "Artifact": {
                "additionalProperties": true,
                "properties": {
                  "details": {"additionalProperties": {"type": "string"}, "type": "object"},
                  "files": {"additionalProperties": {"type": "string"}, "type": "object"},
                  "id": {"type": "string"},
                  "provider": {"type": "string"}
                },
                "required": ["provider"],
                "type": "object"
              },
              "Build": {
                "additionalProperties": false,
                "properties": {
                  "failed_step": {"type": "string"},
                  "family": {"type": "string"},
                  "finished": {"format": "date-time", "type": "string"},
                  "has_log": {"type": "boolean"},
                  "host": {"type": "string"},
                  "id": {"type": "string"},
                  "image": {"type": "string"},
                  "message": {"type": "string"},
                  "started": {"format": "date-time", "type": "string"},
                  "status": {"enum": ["running", "succeeded", "failed", "cancelled"], "type": "string"}
                },
                "required": ["id", "family", "status", "started", "has_log"],
                "type": "object"
              },
              "BuildPage": {
                "additionalProperties": false,
                "properties": {
                  "builds": {"items": {"$ref": "#/components/schemas/Build"}, "type": "array"},
                  "family": {"type": "string"},
                  "limit": {"minimum": 1, "type": "integer"},
                  "offset": {"minimum": 0, "type": "integer"},
                  "total": {"minimum": 0, "type": "integer"}
                },
                "required": ["offset", "limit", "total", "builds"],
                "type": "object"
              },
              "ChannelAssignment": {
                "additionalProperties": false,
                "properties": {
                  "actor": {"type": "string"},
                  "at": {"format": "date-time", "type": "string"},
                  "family": {"type": "string"},
                  "id": {"type": "integer"},
                  "image": {"type": "string"},
                  "name": {"type": "string"}
                },
                "required": ["family", "name", "image", "at", "actor"],
                "type": "object"
              },
              "ChannelList": {
                "additionalProperties": false,
                "properties": {
                  "current": {
                    "items": {
                      "additionalProperties": false,
                      "properties": {"channel": {"type": "string"}, "image": {"type": "string"}},
                      "required": ["channel", "image"],
                      "type": "object"
                    },
                    "type": "array"
                  },
                  "family": {"type": "string"},
                  "history": {"items": {"$ref": "#/components/schemas/ChannelAssignment"}, "type": "array"}
                },
                "required": ["family", "current", "history"],
                "type": "object"
              },
              "Error": {
                "additionalProperties": false,
                "properties": {
                  "error": {
                    "additionalProperties": false,
                    "properties": {"message": {"type": "string"}, "status": {"type": "integer"}},
                    "required": ["status", "message"],
                    "type": "object"
                  }
                },
                "required": ["error"],
                "type": "object"
              },
              "Event": {
                "additionalProperties": false,
                "properties": {
                  "actor": {"type": "string"},
                  "at": {"format": "date-time", "type": "string"},
                  "family": {"type": "string"},
                  "fromState": {"$ref": "#/components/schemas/State"},
                  "id": {"type": "integer"},
                  "image": {"type": "string"},
                  "reason": {"type": "string"},
                  "toState": {"$ref": "#/components/schemas/State"}
                },
                "required": ["image", "family", "fromState", "toState", "at", "actor", "reason"],
                "type": "object"
              },
              "FamilyList": {
                "additionalProperties": false,
                "properties": {"families": {"items": {"$ref": "#/components/schemas/FamilySummary"}, "type": "array"}},
                "required": ["families"],
                "type": "object"
              },
              "FamilySummary": {
                "additionalProperties": false,
                "properties": {
                  "channels": {"additionalProperties": {"type": "string"}, "type": "object"},
                  "counts": {"additionalProperties": {"minimum": 0, "type": "integer"}, "type": "object"},
                  "family": {"type": "string"},
                  "head": {"type": "string"},
                  "newest": {"format": "date-time", "type": "string"},
                  "parent_family": {"type": "string"},
                  "total": {"minimum": 0, "type": "integer"}
                },
                "required": ["family", "counts", "total", "channels"],
                "type": "object"
              },
              "Image": {
                "additionalProperties": false,
                "properties": {
                  "artifact": {"$ref": "#/components/schemas/Artifact"},
                  "build_id": {"type": "string"},
                  "build_key": {"type": "string"},
                  "created": {"type": "string"},
                  "delete_on": {"type": "string"},
                  "description": {"type": "string"},
                  "digest": {"type": "string"},
                  "disk": {"type": "string"},
                  "family": {"type": "string"},
                  "key_inputs": {"additionalProperties": {"type": "string"}, "type": "object"},
                  "labels": {"additionalProperties": {"type": "string"}, "type": "object"},
                  "log": {"type": "string"},
                  "name": {"type": "string"},
                  "obsolete_on": {"type": "string"},
                  "origin": {"$ref": "#/components/schemas/Origin"},
                  "parent": {"type": "string"},
                  "provider": {"type": "string"},
                  "purge_on": {"type": "string"},
                  "purged": {"type": "boolean"},
                  "replacement": {"type": "string"},
                  "size": {"type": "integer"},
                  "source": {"type": "string"},
                  "state": {"$ref": "#/components/schemas/State"},
                  "template_hash": {"type": "string"},
                  "tests": {"$ref": "#/components/schemas/TestRun"},
                  "version": {"type": "string"}
                },
                "required": [
                  "name",
                  "family",
                  "version",
                  "state",
                  "size",
                  "created",
                  "digest",
                  "provider",
                  "labels",
                  "template_hash",
                  "build_id",
                  "log",
                  "source",
                  "purged"
                ],
                "type": "object"
              },
              "ImageDetail": {
                "additionalProperties": false,
                "properties": {
                  "chain": {"items": {"type": "string"}, "type": "array"},
                  "children": {"items": {"type": "string"}, "type": "array"},
                  "events": {"items": {"$ref": "#/components/schemas/Event"}, "type": "array"},
                  "image": {"$ref": "#/components/schemas/Image"},
                  "packages": {"minimum": 0, "type": "integer"},
                  "rebuild": {
                    "additionalProperties": false,
                    "properties": {"changed": {"items": {"type": "string"}, "type": "array"}, "previous": {"type": "string"}},
                    "required": ["previous", "changed"],
                    "type": "object"
                  },
                  "signature": {
                    "additionalProperties": false,
                    "properties": {
                      "key": {"type": "string"},
                      "problems": {"items": {"type": "string"}, "type": "array"},
                      "status": {"enum": ["verified", "unsigned", "problem"], "type": "string"}
                    },
                    "required": ["status", "problems"],
                    "type": "object"
                  },
                  "stale": {"type": "boolean"},
                  "stale_because": {"type": "string"},
                  "tests": {"items": {"$ref": "#/components/schemas/TestRun"}, "type": "array"}
                },
                "required": ["image", "chain", "children", "stale", "signature", "events", "tests"],
                "type": "object"
              },
              "ImagePage": {
                "additionalProperties": false,
                "properties": {
                  "family": {"type": "string"},
                  "images": {"items": {"$ref": "#/components/schemas/Image"}, "type": "array"},
                  "limit": {"minimum": 1, "type": "integer"},
                  "offset": {"minimum": 0, "type": "integer"},
                  "state": {"$ref": "#/components/schemas/State"},
                  "total": {"minimum": 0, "type": "integer"}
                },
                "required": ["family", "offset", "limit", "total", "images"],
                "type": "object"
              },
              "LineageGraph": {
                "additionalProperties": false,
                "properties": {
                  "edges": {
                    "items": {
                      "additionalProperties": false,
                      "properties": {"child": {"type": "string"}, "parent": {"type": "string"}},
                      "required": ["parent", "child"],
                      "type": "object"
                    },
                    "type": "array"
                  },
                  "nodes": {
                    "items": {
                      "additionalProperties": false,
                      "properties": {
                        "family": {"type": "string"},
                        "head": {"type": "boolean"},
                        "layer": {"minimum": 0, "type": "integer"},
                        "name": {"type": "string"},
                        "stale": {"type": "boolean"},
                        "state": {"$ref": "#/components/schemas/State"},
                        "version": {"type": "string"}
                      },
                      "required": ["name", "family", "version", "state", "layer", "head", "stale"],
                      "type": "object"
                    },
                    "type": "array"
                  },
                  "truncated": {"type": "boolean"}
                },
                "required": ["nodes", "edges", "truncated"],
                "type": "object"
              },
              "Origin": {
                "additionalProperties": false,
                "properties": {
                  "branch": {"type": "string"},
                  "ci": {"type": "string"},
                  "commit": {"type": "string"},
                  "dirty": {"type": "boolean"},
                  "host": {"type": "string"},
                  "job": {"type": "string"},
                  "job_name": {"type": "string"},
                  "job_url": {"type": "string"},
                  "pipeline": {"type": "string"},
                  "project": {"type": "string"},
                  "user": {"type": "string"}
                },
                "required": ["host", "user"],
                "type": "object"
              },
              "Package": {
                "additionalProperties": false,
                "properties": {
                  "architecture": {"type": "string"},
                  "name": {"type": "string"},
                  "source": {"type": "string"},
                  "source_version": {"type": "string"},
                  "version": {"type": "string"}
                },
                "required": ["name", "version", "architecture", "source", "source_version"],
                "type": "object"
              },
              "PackageList": {
                "additionalProperties": false,
                "properties": {
                  "image": {"type": "string"},
                  "limit": {"minimum": 1, "type": "integer"},
                  "offset": {"minimum": 0, "type": "integer"},
                  "packages": {"items": {"$ref": "#/components/schemas/Package"}, "type": "array"},
                  "query": {"type": "string"},
                  "total": {"minimum": 0, "type": "integer"}
                },
                "required": ["image", "offset", "limit", "total", "packages"],
                "type": "object"
              },
              "State": {"enum": ["TESTING", "FAILED", "READY", "DEPRECATED", "OBSOLETE", "DELETED"], "type": "string"},
              "TestRun": {
                "additionalProperties": false,
                "properties": {
                  "failed": {"minimum": 0, "type": "integer"},
                  "failed_step": {"type": "string"},
                  "finished": {"type": "string"},
                  "log": {"type": "string"},
                  "message": {"type": "string"},
                  "passed": {"minimum": 0, "type": "integer"},
                  "run": {"type": "string"},
                  "skipped": {"minimum": 0, "type": "integer"},
                  "started": {"type": "string"},
                  "status": {"type": "string"},
                  "steps": {"items": {"$ref": "#/components/schemas/TestStep"}, "type": "array"},
                  "tests_hash": {"type": "string"}
                },
                "required": ["run", "status", "started", "tests_hash", "passed", "failed", "skipped", "steps"],
                "type": "object"
              },
              "TestStep": {
                "additionalProperties": false,
                "properties": {
                  "reason": {"type": "string"},
                  "seconds": {"type": "number"},
                  "status": {"enum": ["passed", "failed", "skipped"], "type": "string"},
                  "title": {"type": "string"}
                },
                "required": ["title", "status"],
                "type": "object"
              }
            },
            "securitySchemes": {"token": {"scheme": "bearer", "type": "http"}}
          },
          "info": {
            "description": "The kiln catalog, read-only: families, images, lineage, channels, builds (docs/serve.md). Beyond loopback every request needs Authorization: Bearer TOKEN.",
            "title": "kiln serve",
            "version": "1"
          },
          "openapi": "3.0.3",
          "paths": {
            "/api/builds": {
              "get": {
                "operationId": "listBuilds",
                "parameters": [
                  {
                    "description": "Only builds of this family.",
                    "in": "query",
                    "name": "family",
                    "required": false,
                    "schema": {"pattern": "^[a-z0-9][a-z0-9-]{0,62}$", "type": "string"}
                  },
                  {"$ref": "#/components/parameters/limit"},
                  {"$ref": "#/components/parameters/offset"}
                ],
                "responses": {
                  "200": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/BuildPage"}}}, "description": "OK"},
                  "400": {"$ref": "#/components/responses/Problem"},
                  "401": {"$ref": "#/components/responses/Unauthorized"}
                },
                "summary": "Build attempts, newest first."
              }
            },
            "/api/builds/{id}": {
              "get": {
                "operationId": "getBuild",
                "parameters": [{"$ref": "#/components/parameters/id"}],
                "responses": {
                  "200": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Build"}}}, "description": "OK"},
                  "400": {"$ref": "#/components/responses/Problem"},
                  "401": {"$ref": "#/components/responses/Unauthorized"},
                  "404": {"$ref": "#/components/responses/Problem"}
                },
                "summary": "One build attempt."
              }
            },
            "/api/builds/{id}/log": {
              "get": {
                "operationId": "getBuildLog",
                "parameters": [{"$ref": "#/components/parameters/id"}],
                "responses": {
                  "200": {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "OK"},
                  "400": {"$ref": "#/components/responses/Problem"},
                  "401": {"$ref": "#/components/responses/Unauthorized"},
                  "404": {"$ref": "#/components/responses/Problem"}
                },
                "summary": "A build's log: archived, or the live file of a build running on this machine."
              }
            },
            "/api/families": {
              "get": {
                "operationId": "listFamilies",
                "parameters": [],
                "responses": {
                  "200": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/FamilyList"}}}, "description": "OK"},
                  "400": {"$ref": "#/components/responses/Problem"},
                  "401": {"$ref": "#/components/responses/Unauthorized"}
                },
                "summary": "Every family: image counts by state, head, channels."
              }
            },
            "/api/families/{family}": {
              "get": {
                "operationId": "getFamily",
                "parameters": [{"$ref": "#/components/parameters/family"}],
                "responses": {
                  "200": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/FamilySummary"}}}, "description": "OK"},
                  "400": {"$ref": "#/components/responses/Problem"},
                  "401": {"$ref": "#/components/responses/Unauthorized"},
                  "404": {"$ref": "#/components/responses/Problem"}
                },
                "summary": "One family's summary."
              }
            },
            "/api/families/{family}/channels": {
              "get": {
                "operationId": "listChannels",
                "parameters": [{"$ref": "#/components/parameters/family"}],
                "responses": {
                  "200": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/ChannelList"}}}, "description": "OK"},
                  "400": {"$ref": "#/components/responses/Problem"},
                  "401": {"$ref": "#/components/responses/Unauthorized"},
                  "404": {"$ref": "#/components/responses/Problem"}
                },
                "summary": "A family's channels now and every assignment, newest first."
              }
            },
            "/api/families/{family}/images": {
              "get": {
                "operationId": "listFamilyImages",
                "parameters": [
                  {"$ref": "#/components/parameters/family"},
                  {
                    "description": "Only images in this state.",
                    "in": "query",
                    "name": "state",
                    "required": false,
                    "schema": {"$ref": "#/components/schemas/State"}
                  },
                  {"$ref": "#/components/parameters/limit"},
                  {"$ref": "#/components/parameters/offset"}
                ],
                "responses": {
                  "200": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/ImagePage"}}}, "description": "OK"},
                  "400": {"$ref": "#/components/responses/Problem"},
                  "401": {"$ref": "#/components/responses/Unauthorized"},
                  "404": {"$ref": "#/components/responses/Problem"}
                },
                "summary": "A family's images, newest first, a page at a time."
              }
            },
            "/api/images/{name}": {
              "get": {
                "operationId": "getImage",
                "parameters": [{"$ref": "#/components/parameters/name"}],
                "responses": {
                  "200": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/ImageDetail"}}}, "description": "OK"},
                  "400": {"$ref": "#/components/responses/Problem"},
                  "401": {"$ref": "#/components/responses/Unauthorized"},
                  "404": {"$ref": "#/components/responses/Problem"}
                },
                "summary": "One image: its record, parent chain, children, staleness, rebuild reason, signature, lifecycle, tests."
              }
            },
            "/api/images/{name}/packages": {
              "get": {
                "operationId": "listPackages",
                "parameters": [
                  {"$ref": "#/components/parameters/name"},
                  {
                    "description": "Only packages whose name or source contains this text.",
                    "in": "query",
                    "name": "q",
                    "required": false,
                    "schema": {"type": "string"}
                  },
                  {"$ref": "#/components/parameters/limit"},
                  {"$ref": "#/components/parameters/offset"}
                ],
                "responses": {
                  "200": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/PackageList"}}}, "description": "OK"},
                  "400": {"$ref": "#/components/responses/Problem"},
                  "401": {"$ref": "#/components/responses/Unauthorized"},
                  "404": {"$ref": "#/components/responses/Problem"}
                },
                "summary": "The packages an image has installed, searchable."
              }
            },
            "/api/images/{name}/provenance": {
              "get": {
                "operationId": "getProvenance",
                "parameters": [{"$ref": "#/components/parameters/name"}],
                "responses": {
                  "200": {"content": {"application/json": {"schema": {"type": "object"}}}, "description": "OK"},
                  "400": {"$ref": "#/components/responses/Problem"},
                  "401": {"$ref": "#/components/responses/Unauthorized"},
                  "404": {"$ref": "#/components/responses/Problem"}
                },
                "summary": "The image's provenance record as its build wrote it (docs/provenance.md)."
              }
            },
            "/api/lineage": {
              "get": {
                "operationId": "getLineage",
                "parameters": [
                  {
                    "description": "Include OBSOLETE and DELETED images.",
                    "in": "query",
                    "name": "all",
                    "required": false,
                    "schema": {"type": "boolean"}
                  }
                ],
                "responses": {
                  "200": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/LineageGraph"}}}, "description": "OK"},
                  "400": {"$ref": "#/components/responses/Problem"},
                  "401": {"$ref": "#/components/responses/Unauthorized"}
                },
                "summary": "The store's images as a graph: base, application, product; stale images marked."
              }
            },
            "/api/openapi.json": {
              "get": {
                "operationId": "openapi",
                "parameters": [],
                "responses": {
                  "200": {"content": {"application/json": {"schema": {"type": "object"}}}, "description": "OK"},
                  "400": {"$ref": "#/components/responses/Problem"},
                  "401": {"$ref": "#/components/responses/Unauthorized"}
                },
                "summary": "This document."
              }
            }
          },
          "servers": [{"url": "/"}]
        }
        """#
}
