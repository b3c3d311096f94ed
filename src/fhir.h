/*
 * The patient node's record source (SPEC.md §2, §3.2): a request's
 * patient object, or a FHIR R4 server's Patient resource, both turned
 * into the SPEC's fields: id, name, birth_date, sex, conditions[],
 * medications[], allergies[].
 */
#ifndef TANDEM_FHIR_H
#define TANDEM_FHIR_H

#include <stdatomic.h>
#include <stddef.h>

#include <json-c/json.h>

#include "conf.h"
#include "err.h"

#define FHIR_BODY_MAX		(256 * 1024)
#define FHIR_ID_MAX		64	/* FHIR R4 id: [A-Za-z0-9\-\.]{1,64} */
#define PATIENT_FIELD_MAX	256	/* bytes of one string field */
#define PATIENT_LIST_MAX	100	/* items of one list */

/* Return 1 if id is a valid FHIR resource id. */
int		 fhir_valid_id(const char *id);
/*
 * GET {base_url}/Patient/{id} (Accept: application/fhir+json). Return
 * TERR_OK with *patient the mapped record, or NULL when the server says
 * 404 or 410; else an error (UPSTREAM_*, STREAM_TIMEOUT when stopped)
 * with a message naming no patient data.
 */
enum terr	 fhir_patient(const struct conf *, const char *id,
		    const atomic_int *stop, struct json_object **patient,
		    char *msg, size_t msgsz);
/* Map a Patient resource to SPEC fields; NULL when it is not one. */
struct json_object *fhir_map_patient(struct json_object *resource);
/*
 * A request's patient object in SPEC fields: known fields of the right
 * type kept (bounded), the rest dropped. Return a new object.
 */
struct json_object *patient_normalise(struct json_object *patient);
/* 1 if the request's patient has any non-null field besides "id". */
int		 patient_has_details(struct json_object *patient);

#endif
